"""`sems demo` end to end: scenario -> simulator -> broker -> agent -> live table -> summary.

The simulated station runs `time_factor` times faster than real time so that EVs arrive
within the demo's minute; the agent's control period stays real (250 ms). Every child is
stopped on the way out, whatever the way out is (end of --seconds, Ctrl-C, SIGTERM, an
error): the agent first, so it still reaches the simulated chargers with its fallback
limits, then the broker, then the simulator.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from agent.demo.acts import Acts
from agent.demo.children import (
    Child,
    ChildError,
    child_environment,
    free_port,
    mosquitto_binary,
    sibling_script,
    start_broker,
    start_simulator,
)
from agent.demo.observe import AgentProbe, NotifyListener, SimProbe, Truth, UplinkCounter
from agent.demo.scenario import busy_window, is_day, load_scenario, rotate_day, station_of
from agent.demo.view import Frame, render

SAMPLE_S = 0.05  # the simulator's physics tick: one truth sample per tick
REFRESH_S = 1.0  # live table and agent polls
PLAIN_REFRESH_S = 10.0  # table to a pipe or file: every 10 s, not every second
LEAD_WALL_S = 5.0  # the first EV comes at least this long after the simulator starts,
#                    which covers the agent's start-up (imports, cached numba kernel)
READY_TIMEOUT_S = 120.0  # a cold numba cache compiles the kernel first
AGENT_STOP_S = 15.0
RANDOM_EVS_PER_HOUR = 30.0  # for a bare station file, which has no EVs of its own


@dataclass(frozen=True)
class DemoOptions:
    scenario: Path
    time_factor: float = 60.0
    seconds: float | None = None  # None: until Ctrl-C / SIGTERM
    json: bool = False
    broker: bool = True
    # The staged rush of fast EVs and the grid cut (agent/demo/acts.py), and a start where
    # the day is busiest; False plays the day file as it is, from its first slot.
    staged: bool = True
    profiles: tuple[str, ...] = ()  # DEVICE=PROFILE, passed to sems-sim --profile


class Interrupted(BaseException):
    """SIGINT or SIGTERM: end the demo the normal way (stop everything, summarise)."""


@contextmanager
def _signals_interrupt() -> Iterator[Callable[[], None]]:
    """SIGINT/SIGTERM raise Interrupted until the returned `shield()` is called; from then
    on (shutdown) they are ignored so a second Ctrl-C cannot leave children behind."""
    def handler(signum: int, frame: Any) -> None:
        raise Interrupted

    def shield() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield shield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def _warm_kernel() -> None:
    """Compile the allocator kernel into the numba cache (or check it is there) before the
    simulator's clock starts, so the agent's start-up is short and predictable."""
    from allocator.arrays import StationArrays

    StationArrays(1, 1).warm_up()


def _workdir() -> Path:
    """A fresh temp dir ($TMPDIR) for the config, store, logs and sockets; under /tmp when
    $TMPDIR is so deep that a socket path would pass AF_UNIX's 108-byte limit."""
    d = Path(tempfile.mkdtemp(prefix="sems-demo-"))
    if len(str(d / "notify.sock").encode()) > 100:
        d.rmdir()
        d = Path(tempfile.mkdtemp(prefix="sems-demo-", dir="/tmp"))
    return d


class Demo:
    def __init__(self, opts: DemoOptions, out: TextIO, err: TextIO) -> None:
        self.opts = opts
        self.out = out
        self.err = err
        self.workdir = _workdir()
        self.children: list[Child] = []
        self.truth = Truth()
        self.sim_probe: SimProbe | None = None
        self.agent_probe = AgentProbe(self.workdir / "api.sock", self.workdir / "agent.db")
        self.notify: NotifyListener | None = None
        self.uplink: UplinkCounter | None = None
        self.broker_note = "no broker (--no-broker)"
        self.window_label = "now"  # where in the scenario's day the demo starts (ISO time)
        self.station_id = ""
        self.started_wall: float | None = None
        self.ended_wall: float | None = None
        self.interrupted = False
        self.exit_status: dict[str, int | None] = {}  # child -> its exit status (0: clean)
        self.tty = out.isatty()
        self.acts: Acts | None = None
        self.rated_kw: dict[str, float] = {}
        self.demand_charge: float | None = None  # EUR per kW of the day's peak, if priced

    # ---- start ---------------------------------------------------------------------------
    def start(self) -> None:
        opts = self.opts
        data = load_scenario(opts.scenario)
        random_evs = 0.0
        if is_day(data):
            if opts.staged:  # start where the day is busiest
                span = (opts.seconds or 60.0) * opts.time_factor
                window = busy_window(data, span, LEAD_WALL_S * opts.time_factor)
                data = rotate_day(data, window.offset_s)
            self.window_label = data["series"][0]["start"]
        else:
            random_evs = RANDOM_EVS_PER_HOUR
        self.rated_kw = {c["id"]: float(c["maxPower"]) for c in station_of(data)["chargers"]}
        charge = (data.get("tariff") or {}).get("demandCharge")
        self.demand_charge = float(charge) if charge is not None else None
        scenario_file = self.workdir / "scenario.json"
        scenario_file.write_text(json.dumps(data))
        _warm_kernel()

        sim, ready = start_simulator(scenario_file, opts.time_factor, self.workdir,
                                     random_evs=random_evs, profiles=opts.profiles)
        self.children.append(sim)
        self.station_id = ready["stationId"]
        self.sim_probe = SimProbe(ready["control"])
        self.sample()

        broker_port = self._start_broker()
        from agent.config.settings import ConfigError
        from agent.demo.agent_config import build_agent_config, write_agent_config

        config = build_agent_config(ready, station_of(data), self.workdir,
                                    time_factor=opts.time_factor, broker_port=broker_port)
        try:
            path, settings = write_agent_config(config, self.workdir / "agent.toml")
        except ConfigError as exc:  # a demo bug, not a user mistake: say what, precisely
            raise ChildError(f"generated agent config rejected: {'; '.join(exc.problems)}") from None
        self.notify = NotifyListener(self.workdir / "notify.sock")
        agent = Child("agent", [sibling_script("sems"), "run", "--config", str(path)],
                      env=child_environment({"NOTIFY_SOCKET": str(self.notify.path)}),
                      log=self.workdir / "agent.log")
        self.children.append(agent)
        mqtt = getattr(settings, "mqtt", None)
        if broker_port is not None and mqtt is not None:
            self.uplink = UplinkCounter(broker_port, f"{mqtt.topic_prefix}/{mqtt.station_id}/#")
        self._wait_ready(agent)

    def _start_broker(self) -> int | None:
        if not self.opts.broker:
            return None
        binary = mosquitto_binary()
        if binary is None:
            self.broker_note = "no broker: Mosquitto is not installed (apt-get install mosquitto)"
            if not self.opts.json:
                print(f"sems demo: {self.broker_note}; running without the uplink",
                      file=self.err)
            return None
        port = free_port()
        self.children.append(start_broker(binary, self.workdir, port))
        self.broker_note = f"127.0.0.1:{port}"
        return port

    def _wait_ready(self, agent: Child) -> None:
        assert self.notify is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.notify.ready:
            self._check_alive()
            if time.monotonic() > deadline:
                raise ChildError(f"agent not ready within {READY_TIMEOUT_S:g} s: {agent.tail()}")
            self.sample()
            time.sleep(SAMPLE_S)  # a display loop's pace, not control logic
            self.notify.drain()
        self.started_wall = time.monotonic()
        pids = ", ".join(f"{c.name} {c.pid}" for c in self.children)
        print(f"sems demo: {self.station_id} from {self.window_label} at "
              f"{self.opts.time_factor:g}x; agent running (pids: {pids})", file=self.err, flush=True)

    # ---- run -----------------------------------------------------------------------------
    def sample(self) -> None:
        assert self.sim_probe is not None
        self.truth.add(self.sim_probe.state())

    def _check_alive(self) -> None:
        for child in self.children:
            if not child.running():
                raise ChildError(f"{child.name} exited with status {child.proc.returncode}: "
                                 f"{child.tail()}")

    def run(self) -> None:
        from agent.cli.client import ApiClient

        assert self.started_wall is not None and self.sim_probe is not None
        api = ApiClient(str(self.agent_probe.socket_path), timeout_s=2.0)
        # the staged rush and cut (or, not staged, only the witness of what happened)
        self.acts = Acts(self.sim_probe, api, self.rated_kw, stage=self.opts.staged)
        try:
            self._loop()
        finally:
            api.__exit__(None, None, None)

    def _loop(self) -> None:
        assert self.started_wall is not None and self.acts is not None
        end = None if self.opts.seconds is None else self.started_wall + self.opts.seconds
        next_refresh = 0.0
        last_shown = float("-inf")
        while end is None or time.monotonic() < end:
            self._check_alive()
            self.sample()
            now = time.monotonic()
            assert self.truth.last is not None
            self.acts.step(now - self.started_wall, self.truth.last, self.agent_probe.view.station)
            if now >= next_refresh:
                self.poll_agent()
                next_refresh = now + REFRESH_S
                if not self.opts.json and (self.tty or now - last_shown >= PLAIN_REFRESH_S):
                    self.show()
                    last_shown = now
            time.sleep(SAMPLE_S)  # a display loop's pace, not control logic
        self.ended_wall = time.monotonic()
        self.poll_agent()
        if not self.opts.json:
            self.show()  # the last live picture, before the agent hands over to fallbacks

    def poll_agent(self) -> None:
        if self.notify is not None:
            self.notify.drain()
            self.agent_probe.view.status = self.notify.status
        self.agent_probe.poll_api()
        self.agent_probe.poll_store()

    def frame(self) -> Frame:
        wall = (time.monotonic() if self.ended_wall is None else self.ended_wall)
        return Frame(self.truth, self.agent_probe.view,
                     self.uplink.snapshot() if self.uplink is not None else None,
                     self.broker_note, self.opts.time_factor,
                     wall - (self.started_wall or wall), self.opts.seconds,
                     tuple(self.acts.w.staged) if self.acts else ())

    def show(self) -> None:
        text = render(self.frame())
        if self.tty:
            self.out.write("\x1b[H\x1b[2J" + text + "\n")
        else:
            self.out.write(text + "\n\n")
        self.out.flush()

    # ---- stop ----------------------------------------------------------------------------
    def stop(self) -> None:
        """Agent, then broker, then simulator; the agent's final figures are read after it
        stopped (its store is flushed at exit), the simulator's before it goes."""
        if self.ended_wall is None:
            self.ended_wall = time.monotonic()
        agent = next((c for c in self.children if c.name == "agent"), None)
        if agent is not None:
            if agent.running() and self.started_wall is not None:
                self.poll_agent()  # the last cycle statistics, while the API still answers
            self.exit_status["agent"] = agent.stop(AGENT_STOP_S)
            self.agent_probe.poll_store()
        if self.sim_probe is not None:
            try:
                self.sample()
            except (OSError, ValueError):
                pass  # the simulator is gone already: the last sample stands
            self.sim_probe.close()
        if self.uplink is not None:
            self.uplink.close()
        for child in reversed(self.children):
            if child.name not in self.exit_status:
                self.exit_status[child.name] = child.stop()
        self.agent_probe.close()
        if self.notify is not None:
            self.notify.close()

    def summary(self) -> dict[str, Any]:
        view = self.agent_probe.view.station if self.agent_probe.view.api else None
        t = self.truth
        wall = (self.ended_wall or 0.0) - (self.started_wall or self.ended_wall or 0.0)
        return {
            "stationId": self.station_id,
            "scenario": str(self.opts.scenario),
            "scenarioStart": self.window_label,
            "timeFactor": self.opts.time_factor,
            "wallSeconds": round(wall, 1),
            "simulatedSeconds": round(t.simulated_s, 1),
            "interrupted": self.interrupted,
            "cycles": view["cycles"] if view else None,
            "cycle_ms": view.get("cycle_ms") if view else None,
            "overruns": view["overruns"] if view else None,
            "gridCapacity": t.capacity_kw,
            "maxGridImport": round(t.max_import_kw, 2),
            # Simulated seconds, as the station's meter saw them; the agent reacts in real
            # time, so at 60x one 250 ms cycle of lag is 15 simulated seconds.
            "secondsOverCapacity": round(t.seconds_over, 1),
            "wallSecondsOverCapacity": round(t.seconds_over / self.opts.time_factor, 2),
            # The electrical tree, on the simulator's breakers (empty: the station has none).
            "circuits": t.circuits,
            "trips": len(t.trips),
            "limitWrites": t.limit_writes,
            "sessionsStarted": self.agent_probe.view.started,
            "sessionsStopped": self.agent_probe.view.stopped,
            "energyDeliveredKwh": round(self.agent_probe.view.energy_kwh, 2),
            "simulatorEnergyKwh": round(t.energy_kwh, 2),
            "uplinkMessages": self.uplink.snapshot() if self.uplink is not None else None,
            "truthSamples": t.samples,
            "exitStatus": dict(self.exit_status),
            **self._operator_figures(),
        }

    def _operator_figures(self) -> dict[str, Any]:
        """What a station operator asks: the peak, the cut, the battery, sessions, money."""
        w = (self.acts or Acts(None, None, {})).w
        t = self.truth
        served = sum(1 for kwh in t.session_energy.values() if kwh > 0.01)
        avoided = max(0.0, w.uncontrolled_peak_kw - t.max_import_kw)
        saved = None if self.demand_charge is None else round(avoided * self.demand_charge, 2)
        return {
            "sessionsServed": served,
            # per EV (charger/connector/session): what the simulator's meter gave it, kWh
            "sessionEnergyKwh": {f"{cid}/{idx}/{sid}": round(kwh, 2)
                                 for (cid, idx, sid), kwh in sorted(t.session_energy.items())},
            "energyToEvsKwh": round(t.energy_kwh, 1),
            "uncontrolledPeakKw": round(w.uncontrolled_peak_kw, 1),
            "batteryMaxDischargeKw": round(w.battery_max_discharge_kw, 1),
            "cut": {"kw": w.cut_kw, "appliedCycles": w.cut_applied_cycles,
                    "appliedWallSeconds": w.cut_applied_wall_s,
                    "peakAfterKw": round(w.peak_after_cut_kw, 1)},
            "demandChargeEurKw": self.demand_charge,
            "savedEur": saved,
            "firstSeenWallSeconds": dict(w.first_seen),
            "staged": list(w.staged),
        }

    def cleanup(self, keep: bool) -> None:
        if keep:
            print(f"sems demo: logs kept in {self.workdir}", file=self.err)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


def run_demo(opts: DemoOptions, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run the demo; print the live table (or nothing with --json) and then the summary.
    Exit 0 when it ran (to its end or to Ctrl-C/SIGTERM), 1 when a part failed."""
    demo = Demo(opts, out, err)
    failed: str | None = None
    with _signals_interrupt() as shield:
        try:
            demo.start()
            demo.run()
        except Interrupted:
            demo.interrupted = True
        except (ChildError, OSError, ConnectionError, ValueError) as exc:
            failed = str(exc)
        finally:
            shield()
            demo.stop()
    if failed is not None:
        print(f"sems demo: {failed}", file=err)
        demo.cleanup(keep=True)
        return 1
    summary = demo.summary()
    if opts.json:
        out.write(json.dumps(summary, indent=2) + "\n")
    else:
        out.write(_human_summary(summary) + "\n")
    out.flush()
    demo.cleanup(keep=False)
    return 0


def _human_summary(s: dict[str, Any]) -> str:
    """The end of the demo in a station operator's words: one energy total, one peak."""
    minutes = s["simulatedSeconds"] / 60
    lines = [f"\nSummary: {s['wallSeconds']:g} s of demo covered {minutes:.0f} min of "
             f"{s['stationId']}'s day from {s['scenarioStart']} (the station ran "
             f"{s['timeFactor']:g}x faster; the agent in real time)."]
    lines.append(f"  Peak grid import {s['maxGridImport']:.0f} kW, kept under the "
                 f"{s['gridCapacity']:g} kW connection"
                 + (f"; uncontrolled charging would have reached {s['uncontrolledPeakKw']:.0f} kW."
                    if s["uncontrolledPeakKw"] > s["maxGridImport"] else "."))
    cut = s["cut"]
    if cut["kw"] is not None:
        lines.append(f"  Grid cut to {cut['kw']:g} kW: " + (
            f"import under it {cut['appliedCycles']} control cycle(s) later "
            f"({cut['appliedWallSeconds']:g} s), at most {cut['peakAfterKw']:.0f} kW after."
            if cut["appliedCycles"] is not None else "import not under it before the end."))
    if s["batteryMaxDischargeKw"] > 0:
        lines.append(f"  The battery gave up to {s['batteryMaxDischargeKw']:.0f} kW to shave "
                     "the peak.")
    for cid, c in s["circuits"].items():
        lines.append(f"  Circuit {cid}: at most {max(c['peakA']):.1f} A per phase on its "
                     f"{c['ratingA']:g} A fuse" + ("." if c["overRatingS"] == 0 else
                     f", above it for {c['overRatingS']:g} simulated s."))
    if s["trips"]:
        lines.append(f"  Fuses tripped: {s['trips']} (the simulator's breaker model).")
    lines.append(f"  {s['sessionsServed']} sessions served, {s['energyToEvsKwh']:.1f} kWh "
                 "delivered to EVs.")
    if s["savedEur"] is not None:
        lines.append(f"  {s['savedEur']:.2f} EUR saved against uncontrolled charging (demand "
                     f"charge {s['demandChargeEurKw']:.2f} EUR per kW of peak).")
    c = s["cycle_ms"] or {}
    lines.append("  Agent: cycle statistics not available." if s["cycles"] is None else
                 f"  Agent: {s['cycles']} control cycles, p99 {c.get('p99')} ms, "
                 f"{s['overruns']} overruns.")
    return "\n".join(lines)
