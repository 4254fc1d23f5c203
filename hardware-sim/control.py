"""JSON-lines control interface on loopback TCP, for tests and technicians' training.

One JSON object per line in, one per line out: {"ok": true, ...} or {"ok": false, "error"}.
Commands ("cmd"):
  fault   {"device", "fault", ...params}   e.g. {"cmd": "fault", "device": "meter", "fault": "exception", "code": 4}
  clear   {"device"}
  plug    {"charger", "idx", "max_kw", "capacity_kwh", "soc", "energy_needed_kwh", "v2g"?,
           "session_id"?, "announces_max"? (false: the charger reads the EV's maximum as 0),
           "phases"? (1, 2 or 3: the charger's first k conductors)}
  unplug  {"charger", "idx"}
  state   {}                                -> {"ok": true, "state": {...}}
  set     {"base_load_kw"?, "pv_kw"?}       only the keys given; null returns to the scenario / PV curve
  stop    {}                                the simulator shuts down cleanly
A malformed line gets an error reply; it never stops the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from .faults import FaultError

log = logging.getLogger("hardware_sim.control")
MAX_LINE = 64 * 1024


class ControlServer:
    def __init__(self, sim: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        # `sim` is the running hardware_sim.simulator.Simulator; not imported for its type,
        # as the simulator starts this server (one import direction, no cycle).
        self.sim = sim
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port,
                                                  limit=MAX_LINE)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # longer than MAX_LINE
                    writer.write(b'{"ok": false, "error": "line too long"}\n')
                    break
                if not line:
                    break
                if not line.strip():
                    continue
                reply = self.handle_line(line)
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
                if reply.get("stopping"):
                    self.sim.stop_requested.set()
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def handle_line(self, line: bytes) -> dict[str, Any]:
        try:
            msg = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {"ok": False, "error": "not a JSON object"}
        if not isinstance(msg, dict):
            return {"ok": False, "error": "not a JSON object"}
        try:
            return self.handle(msg)
        except (ValueError, FaultError, TypeError) as exc:
            return {"ok": False, "error": str(exc)}

    def handle(self, msg: dict[str, Any]) -> dict[str, Any]:
        sim = self.sim
        cmd = msg.get("cmd")
        if cmd == "state":
            return {"ok": True, "state": sim.state()}
        if cmd == "fault":
            params = {k: v for k, v in msg.items() if k not in ("cmd", "device", "fault")}
            sim.inject(_str(msg, "device"), _str(msg, "fault"), **params)
            return {"ok": True}
        if cmd == "clear":
            sim.clear(_str(msg, "device"))
            return {"ok": True}
        if cmd == "plug":
            sim.plug(_str(msg, "charger"), _int(msg, "idx"), max_kw=_num(msg, "max_kw"),
                     capacity_kwh=_num(msg, "capacity_kwh"), soc=_num(msg, "soc"),
                     energy_needed_kwh=_num(msg, "energy_needed_kwh"),
                     v2g=bool(msg.get("v2g", False)), session_id=str(msg.get("session_id", "")),
                     announces_max=bool(msg.get("announces_max", True)),
                     phases=_int(msg, "phases") if "phases" in msg else 3)
            return {"ok": True}
        if cmd == "unplug":
            sim.unplug(_str(msg, "charger"), _int(msg, "idx"))
            return {"ok": True}
        if cmd == "set":
            changes = {k: msg[k] for k in ("base_load_kw", "pv_kw") if k in msg}
            if not changes:
                raise ValueError("set: give base_load_kw and/or pv_kw (kW, or null)")
            sim.set(**changes)
            return {"ok": True}
        if cmd == "stop":
            return {"ok": True, "stopping": True}
        return {"ok": False, "error": f"cmd: unknown command {cmd!r} "
                                      "(fault, clear, plug, unplug, state, set, stop)"}


def _str(msg: dict[str, Any], key: str) -> str:
    value = msg.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key}: required string")
    return value


def _int(msg: dict[str, Any], key: str) -> int:
    value = msg.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key}: required integer")
    return value


def _num(msg: dict[str, Any], key: str) -> float:
    value = msg.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key}: required number")
    return float(value)
