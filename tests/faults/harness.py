"""Shared scenario machinery for the fault-injection suite.

A scenario runs the hardware simulator in the test's own event loop (so the test can
inject faults and read the physics' truth) and the agent as a real `sems run` child
process with a generated settings file, as systemd would start it: its log goes to a file,
its sd_notify messages (READY, STATUS, WATCHDOG) to a datagram socket the test reads.

    async with Scenario(tmp_path, station=STATION) as sc:
        sc.sim.plug(...)
        await sc.start_agent()
        await sc.wait_for(lambda: ..., 10, "what")
        sc.sim.inject("meter", "silent")
        await sc.run_for(3.0)                 # lets the loop cycle, checking it stays alive
        await sc.agent.wait_log("degraded mode on: grid_meter_stale")
        sc.check_invariants()                 # capacity, alive and cycling

Everything is bounded: every wait has a timeout, the agent is SIGKILLed at the end if it
is still running, and only 127.0.0.1 is ever a target.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sqlite3
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from hardware_sim.simulator import Simulator
from sim_agent import (  # noqa: F401 (BATTERY_STATION: the suite imports it from here)
    BATTERY_STATION,
    CAPACITY_KW,
    STATION,
    agent_config,
    ev,
    write_config,
)

ROOT = Path(__file__).resolve().parents[2]

WATCHDOG_USEC = 1_000_000  # the agent pings at most every 0.5 s after healthy cycles


# ---- the agent process ----------------------------------------------------------------
class NotifyListener:
    """The NOTIFY_SOCKET end systemd would hold: every datagram with its arrival time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[tuple[float, str]] = []
        # Read as datagrams arrive, so each carries its true arrival time (a watchdog
        # ping's age is how long ago the agent last finished a healthy cycle).
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock.fileno(), self.drain)

    def drain(self) -> list[tuple[float, str]]:
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return self.messages
            self.messages.append((time.monotonic(), data.decode(errors="replace")))

    def last(self, prefix: str) -> tuple[float, str] | None:
        found = [m for m in self.drain() if m[1].startswith(prefix)]
        return found[-1] if found else None

    def status(self) -> str:
        """The latest STATUS= line (what `systemctl status` shows)."""
        for _, msg in reversed(self.drain()):
            for line in msg.splitlines():
                if line.startswith("STATUS="):
                    return line[len("STATUS="):]
        return ""

    def close(self) -> None:
        self._loop.remove_reader(self.sock.fileno())
        self.sock.close()


@dataclass
class AgentProcess:
    config_path: Path
    db_path: Path
    log_path: Path
    notify: NotifyListener
    env: dict[str, str]
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0
    mark: Callable[[str], None] = lambda what: None  # the recorder's, for start and kill

    async def start(self) -> None:
        self.starts += 1
        self._mark = len(self.notify.drain())  # this process's messages come after it
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the child
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent.cli", "run", "--config", str(self.config_path),
            env=self.env, cwd=ROOT, stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log_file, stderr=self._log_file,
        )  # fmt: skip
        self.mark(f"agent start {self.starts} pid {self.proc.pid}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def wait_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """The first log line matching the regular expression `pattern`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = regex.search(self.log())
            if match:
                return match
            if not self.running:
                break
            await asyncio.sleep(0.05)
        raise AssertionError(f"no log line matching {pattern!r}; log:\n{self.log()[-3000:]}")

    async def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(m.startswith("READY=1") for _, m in self.notify.drain()[self._mark:]):
                return
            if not self.running:
                break
            await asyncio.sleep(0.05)
        raise AssertionError(f"agent not READY; log:\n{self.log()[-3000:]}")

    def assert_cycling(self, within_s: float = 1.5) -> None:
        """Alive, and a watchdog ping (sent only after a healthy cycle) came recently."""
        assert self.running, f"agent exited ({self.returncode}); log:\n{self.log()[-3000:]}"
        ping = self.notify.last("WATCHDOG=1")
        assert ping is not None, "no watchdog ping yet"
        age = time.monotonic() - ping[0]
        assert age <= within_s, f"last healthy cycle {age:.1f} s ago; log:\n{self.log()[-2000:]}"

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    async def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait (SIGKILL if it overstays); the exit code."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self._log_file.close()
        return self.proc.returncode if self.proc.returncode is not None else -1

    async def kill(self) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.mark(f"agent kill pid {self.proc.pid}")
            self.proc.kill()
            await self.proc.wait()
            self.mark(f"agent killed pid {self.proc.pid}")
        self._log_file.close()


class PhysicsRecorder:
    """Every physics step of the simulator (its grid, battery and each connector's power,
    limit in force and last written limit, TO: in its comm-timeout fallback) plus the test's
    marks (agent start, kill) and the ticks the test's event loop was late for (the physics
    then advanced several steps at once), so a failed capacity check can be read step by
    step: a failing scenario leaves them in physics.tsv beside agent.log. A diagnostic only:
    it records, it judges nothing."""

    def __init__(self, sim: Simulator, maxlen: int = 60_000) -> None:
        self.model = sim.model
        self.rows: deque[str] = deque(maxlen=maxlen)
        self._step = self.model._step
        self._advance = self.model.advance
        self.model._step = self._recorded_step  # type: ignore[method-assign]
        self.model.advance = self._recorded_advance  # type: ignore[method-assign]

    def mark(self, what: str) -> None:
        self.rows.append(f"{time.monotonic():.3f}\t{self.model.t:.2f}\tMARK {what}")

    def _recorded_advance(self, seconds: float, *args: Any) -> None:
        if seconds > 0.15:  # a stretched tick: the test's event loop was late
            self.rows.append(f"{time.monotonic():.3f}\t{self.model.t:.2f}\t"
                             f"ADVANCE {seconds:.2f} s at once")  # fmt: skip
        self._advance(seconds, *args)

    def _recorded_step(self, dt: float) -> None:
        self._step(dt)
        m = self.model
        conns = " ".join(
            f"{cid}/{c.idx}:p={c.power_kw:.1f},lim={c.applied_kw:.1f},cmd={c.commanded_kw:.1f},"
            f"ev={'-' if c.ev is None else f'{c.ev.max_kw:g}'}{',TO' if ch.timed_out else ''}"
            for cid, ch in m.chargers.items() for c in ch.connectors
        )  # fmt: skip
        self.rows.append(f"{time.monotonic():.3f}\t{m.t:.2f}\tgrid={m.meter.total_kw:.1f} "
                         f"bat={m.battery_kw:.1f} sp={m.battery_setpoint_kw:.1f} {conns}")  # fmt: skip

    def dump(self, path: Path) -> None:
        path.write_text("\n".join(self.rows) + "\n")


@dataclass
class Scenario:
    """The simulator (in this event loop) and the agent (a child process) for one test."""

    dir: Path
    station: Mapping[str, Any] = field(default_factory=lambda: STATION)
    rtu_meter: bool = False
    battery: bool = False
    control: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] | None = None
    env: Mapping[str, str] | None = None
    mqtt_port: int | None = None
    profiles: Mapping[str, str] | None = None  # device -> register map, as `sems-sim` takes
    sim: Simulator = field(init=False)
    agent: AgentProcess = field(init=False)

    async def __aenter__(self) -> Scenario:
        self.sim = Simulator(dict(self.station), rtu_meter=self.rtu_meter,
                             profiles=dict(self.profiles or {}))
        await self.sim.start()
        self.recorder = PhysicsRecorder(self.sim)
        db_path = self.dir / "agent.db"
        self.config = agent_config(
            self.sim.endpoints, db_path, rtu_meter=self.rtu_meter, battery=self.battery,
            control=self.control, extra=self.extra, mqtt_port=self.mqtt_port,
        )  # fmt: skip
        config_path = self.dir / "agent.toml"
        write_config(self.config, config_path)
        notify = NotifyListener(self.dir / "notify.sock")
        env = {
            **os.environ,
            "NOTIFY_SOCKET": str(notify.path),
            "WATCHDOG_USEC": str(WATCHDOG_USEC),
            "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR", str(ROOT / ".numba-cache")),
            "PYTHONUNBUFFERED": "1",
            **(self.env or {}),
        }
        env = {k: v for k, v in env.items() if not k.startswith("SEMS_") or k in (self.env or {})}
        self.agent = AgentProcess(config_path, db_path, self.dir / "agent.log", notify, env,
                                  mark=self.recorder.mark)
        self.capacity: CapacitySchedule = [(float("-inf"), float(self.station["gridCapacity"]))]
        return self

    def capacity_changed(self, kw: float) -> None:
        """The agent confirmed a new capacity (a reload): in force for every later check,
        a lowered one SETTLE_S from now (the chargers' reaction delay)."""
        self.capacity.append((self.sim.model.t, kw))

    async def __aexit__(self, *exc: object) -> None:
        if exc and exc[0] is not None:  # what the physics did, step by step, for the failure
            self.recorder.dump(self.dir / "physics.tsv")
        try:
            if self.agent.proc is not None:
                await self.agent.kill()
        finally:
            self.agent.notify.close()
            await self.sim.close()

    async def start_agent(self) -> None:
        """Start `sems run` and wait until it is READY and its first limits are in force
        (before that a charger still has its own power-on limit, which is not the agent's)."""
        await self.agent.start()
        await self.agent.wait_ready()
        maxima = {c["id"]: c["maxPower"] for c in self.station["chargers"]}
        await self.wait_for(
            lambda: all(c["limit"] < maxima[c["chargerId"]] for c in self.sim.state()["connectors"]
                        if c["ev"] is None),
            10, "the agent's first limits",
        )  # fmt: skip

    async def start_charging(self, base_load_kw: float = 20.0) -> None:
        """The common opening: base load set, no PV, the agent started, one EV on CP1/1
        charging (50 kW asked) for a second."""
        self.sim.set(base_load_kw=base_load_kw, pv_kw=0.0)
        await self.start_agent()
        self.ev("CP1", 1, 50.0)
        await self.run_for(1.0)

    def label(self, device: str) -> str:
        """How the drivers name a device in the log: profile@endpoint#unit (regex-escaped)."""
        entry = next(d for d in self.config["devices"] if d["name"] == device)
        where = f"{entry['profile']}@{entry['endpoint']}"
        return re.escape(where) + r"(\?\S*)?" + re.escape(f"#{entry['unit_id']}")

    def ev(self, charger: str, idx: int, kw: float) -> None:
        ev(self.sim, charger, idx, kw)

    def connector(self, charger: str, idx: int) -> dict[str, Any]:
        return next(c for c in self.sim.state()["connectors"]
                    if c["chargerId"] == charger and c["idx"] == idx)  # fmt: skip

    async def wait_for(self, pred: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            if self.agent.proc is not None and not self.agent.running:
                raise AssertionError(f"agent exited waiting for {what}:\n{self.agent.log()[-3000:]}")
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; log:\n{self.agent.log()[-2000:]}")

    async def run_for(self, seconds: float) -> None:
        """Let time pass, checking every half second that the agent is alive and cycling."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
            self.agent.assert_cycling()
            self.assert_within_capacity()

    def assert_within_capacity(self) -> None:
        """The capacity promise over the whole run so far (reloads included), and the
        fallback sizing honest: the simulator's true base load is never above the
        pessimistic one the agent was configured with."""
        pessimistic = self.config["station"]["pessimistic_base_load_kw"]
        base = self.sim.state()["baseLoad"]
        assert base <= pessimistic, f"simulator base load {base} kW > pessimistic {pessimistic} kW"
        assert_within_capacity(self.sim, schedule=self.capacity)

    def check_invariants(self) -> None:
        """Every sample within 2 % of the capacity in force, no stretch above it longer than
        1 s, and the agent alive and cycling."""
        self.assert_within_capacity()
        self.agent.assert_cycling()

    async def api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """One request to the agent's local API over its Unix socket."""
        transport = httpx.AsyncHTTPTransport(uds=self.config["api"]["socket_path"])
        async with httpx.AsyncClient(transport=transport, base_url="http://agent",
                                     timeout=5.0) as client:  # fmt: skip
            return await client.request(method, path, **kw)

    async def health(self) -> dict[str, Any]:
        """GET /api/v1/health: {"status", "dependencies": {name: {"state", "detail"}}}."""
        return (await self.api("GET", "/api/v1/health")).json()

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        return read_events(self.agent.db_path, kind)


CapacitySchedule = list[tuple[float, float]]  # (simulated s from which, capacity kW)
# A lowered capacity comes into force this long after the agent confirmed it: what the
# chargers need to follow a lower limit (the simulator's AC chargers: a 1 s delay, then a
# 22 kW/s ramp). A raised one is in force at once.
SETTLE_S = 2.0


def capacity_at(schedule: CapacitySchedule, t: float) -> float:
    """The capacity in force at simulated time `t` (the latest entry at or before it)."""
    kw = schedule[0][1]
    for since, value in schedule:
        if since <= t:
            kw = value
    return kw


def capacity_violations(
    history: list[tuple[float, float]], schedule: CapacitySchedule, tolerance: float = 0.02,
    max_over_s: float = 1.0,
) -> list[str]:
    """What breaks the promise in a simulator grid history, judged sample by sample against
    the capacity in force at that instant (a lowered one SETTLE_S after it was confirmed):
    a sample above (1 + tolerance) x capacity, or a stretch above the capacity itself
    lasting more than `max_over_s` (an ongoing one counts so far)."""
    problems: list[str] = []
    start: float | None = None
    peak = 0.0
    last_t = 0.0
    for t, kw in history:
        cap = max(capacity_at(schedule, t), capacity_at(schedule, t - SETTLE_S))
        if kw > cap * (1.0 + tolerance):
            problems.append(f"t={t:.1f} s: {kw:.1f} kW > {1 + tolerance:g} x {cap:g} kW")
        if kw > cap:
            if start is None:
                start, peak = t, kw
            peak = max(peak, kw)
        elif start is not None:
            if last_t - start > max_over_s:
                problems.append(f"t={start:.1f} s: {last_t - start:.2f} s above {cap:g} kW "
                                f"(peak {peak:.1f} kW)")  # fmt: skip
            start = None
        last_t = t
    if start is not None and last_t - start > max_over_s:
        problems.append(f"t={start:.1f} s: {last_t - start:.2f} s above capacity (peak {peak:.1f} kW, "
                        "ongoing)")  # fmt: skip
    return problems


def assert_within_capacity(
    sim: Simulator, capacity_kw: float | None = CAPACITY_KW,
    schedule: CapacitySchedule | None = None,
) -> None:
    """Every simulator sample at most 2 % above the capacity in force at its instant, and
    no stretch above that capacity longer than 1 s. `capacity_kw`: one capacity for the
    whole history; `schedule`: capacities changing over time (a reload), which wins."""
    if schedule is None:
        assert capacity_kw is not None
        schedule = [(float("-inf"), capacity_kw)]
    problems = capacity_violations(sim.grid_history, schedule)
    assert not problems, "over capacity (simulator side): " + "; ".join(problems[:10]) + (
        f" ... and {len(problems) - 10} more" if len(problems) > 10 else "")


def read_events(db_path: Path, kind: str | None = None) -> list[dict[str, Any]]:
    """The agent's event log (read-only, beside the running agent: WAL allows it)."""
    if not db_path.exists():
        return []
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM events ORDER BY id").fetchall()
    out = [dict(r) for r in rows]
    return [r for r in out if kind is None or r["kind"] == kind]
