"""What the demo shows and sums up, each figure from the party that knows it:

- the simulator's truth (its control port's `state`): grid import, PV, battery, every
  connector's effective limit and power, the EVs' session energy;
- the agent: its local API (`/api/v1/station`: cycles, cycle times, overruns, the binding
  limit of each connector) and its SQLite store (sessions started and stopped, energy);
- the uplink: the messages the agent published, as a subscriber on the broker sees them.

Nothing here decides anything; the demo only reads.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class SimProbe:
    """A JSON-lines client of the simulator's control port."""

    def __init__(self, address: str, timeout_s: float = 2.0) -> None:
        host, port = address.rsplit(":", 1)
        self._sock = socket.create_connection((host, int(port)), timeout=timeout_s)
        self._file = self._sock.makefile("rwb")

    def command(self, cmd: dict[str, Any]) -> dict[str, Any]:
        self._file.write(json.dumps(cmd).encode() + b"\n")
        self._file.flush()
        line = self._file.readline()
        if not line:
            raise ConnectionError("the simulator closed its control port")
        return json.loads(line)

    def state(self) -> dict[str, Any]:
        return self.command({"cmd": "state"})["state"]

    def close(self) -> None:
        self._file.close()
        self._sock.close()


@dataclass
class Truth:
    """Running figures from successive simulator states (its clock: simulated seconds)."""

    capacity_kw: float = 0.0
    samples: int = 0
    first_t: float | None = None
    last: dict[str, Any] | None = None
    max_import_kw: float = 0.0
    seconds_over: float = 0.0  # simulated seconds with the grid import above capacity
    # (chargerId, idx, EV session id) -> grid-side energy the charger counted for it
    session_energy: dict[tuple[str, int, str], float] = field(default_factory=dict)
    # Each circuit's fuse as the simulator's breaker model saw it (rating A, highest current
    # per grid phase, simulated seconds above the rating), and every trip it logged.
    circuits: dict[str, dict[str, Any]] = field(default_factory=dict)
    trips: list[dict[str, Any]] = field(default_factory=list)
    limit_writes: int = 0  # limits the agent wrote, all connectors (the deadband's saving)

    def add(self, state: dict[str, Any]) -> None:
        self.capacity_kw = float(state["gridCapacity"])
        grid = float(state["gridImport"])
        prev = self.last
        if prev is not None and float(prev["gridImport"]) > self.capacity_kw:
            self.seconds_over += max(0.0, float(state["t"]) - float(prev["t"]))
        if self.first_t is None:
            self.first_t = float(state["t"])
        self.max_import_kw = max(self.max_import_kw, grid)
        for c in state["connectors"]:
            ev = c.get("ev")
            if ev is not None:
                key = (c["chargerId"], int(c["idx"]), str(ev["sessionId"]))
                self.session_energy[key] = float(c["sessionEnergy"])
        for cid, c in (state.get("circuits") or {}).items():
            self.circuits[cid] = {"ratingA": c["rating"],
                                  "peakA": [round(float(a), 2) for a in c["peakCurrent"]],
                                  "overRatingS": round(float(c["overRatingS"]), 1)}
        self.trips = list(state.get("trips") or [])
        self.limit_writes = sum(int(c.get("limitWrites", 0)) for c in state["connectors"])
        self.samples += 1
        self.last = state

    @property
    def simulated_s(self) -> float:
        if self.last is None or self.first_t is None:
            return 0.0
        return float(self.last["t"]) - self.first_t

    @property
    def energy_kwh(self) -> float:
        return sum(self.session_energy.values())


@dataclass
class AgentView:
    station: dict[str, Any] | None = None  # the last /api/v1/station answer
    api: bool = False  # the agent serves its local API
    started: int = 0
    stopped: int = 0
    energy_kwh: float = 0.0
    status: str = ""  # the agent's last sd_notify STATUS line


class AgentProbe:
    """The agent's API (when its daemon serves one) and its store (read-only)."""

    def __init__(self, socket_path: Path, db_path: Path) -> None:
        self.socket_path = socket_path
        self.db_path = db_path
        self.view = AgentView()
        self._client: Any = None

    def poll_api(self) -> None:
        from agent.cli.client import AgentUnreachable, ApiClient, ApiFailure

        if not self.socket_path.exists():
            return
        if self._client is None:
            self._client = ApiClient(str(self.socket_path), timeout_s=1.0)
        try:
            self.view.station = self._client.get("/api/v1/station")
            self.view.api = True
        except (AgentUnreachable, ApiFailure):
            pass  # starting or stopping: the last answer stays on screen

    def poll_store(self) -> None:
        if not self.db_path.exists():
            return
        try:
            with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=1.0) as db:
                started, stopped, energy = db.execute(
                    "SELECT COUNT(*), COALESCE(SUM(status = 'stopped'), 0), "
                    "COALESCE(SUM(energy_kwh), 0) FROM sessions").fetchone()
        except sqlite3.Error:  # the agent is still creating its schema
            return
        self.view.started, self.view.stopped = int(started), int(stopped)
        self.view.energy_kwh = float(energy)

    def close(self) -> None:
        if self._client is not None:
            self._client.__exit__(None, None, None)
            self._client = None


class NotifyListener:
    """The agent's sd_notify datagrams (READY=1, STATUS=...) on a socket of ours."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.setblocking(False)
        self.ready = False
        self.status = ""

    def drain(self) -> None:
        while True:
            try:
                data = self._sock.recv(4096)
            except BlockingIOError:
                return
            for line in data.decode(errors="replace").splitlines():
                key, _, value = line.partition("=")
                if key == "READY" and value == "1":
                    self.ready = True
                elif key == "STATUS":
                    self.status = value

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()


class UplinkCounter:
    """Counts what the agent publishes under <prefix>/<station>/, per message kind, as a
    subscriber on the private broker (paho's network thread)."""

    def __init__(self, port: int, topic: str) -> None:
        import paho.mqtt.client as mqtt

        self.counts: dict[str, int] = {}
        self.connected = False
        self._lock = threading.Lock()
        self._topic = topic
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sems-demo-watch")
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.connect_async("127.0.0.1", port, keepalive=30)
        self._client.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connected = not reason.is_failure
        if self.connected:
            client.subscribe(self._topic, qos=1)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        kind = msg.topic.rsplit("/", 1)[-1]
        with self._lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
