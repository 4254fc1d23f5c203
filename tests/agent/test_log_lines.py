"""Logs an operator can read: a dead device is one line when its fault starts, one when it
ends (duration and count), a summary every so often while it lasts; never a line per cycle,
and no pymodbus hex dumps from a peer that is not Modbus.

The process test runs the minute once, in cycles rather than seconds: the agent at a
100 ms period for 240 cycles, which is the number of cycles of one minute at the default
250 ms (what floods is per cycle; reconnect attempts back off and never log). The summary
period is exercised with FaultLog's own clock, a minute stepped through in no wall time.
"""

from __future__ import annotations

import json
import logging
import socketserver
import subprocess
import threading
import time
from pathlib import Path

import pytest
import sim_agent

from agent.control.episodes import FaultLog

pytestmark = pytest.mark.timeout(180)

REPO = sim_agent.REPO
SEMS = sim_agent.SEMS
CYCLES_PER_MINUTE = 240  # at the default 250 ms period


def test_a_minute_of_failures_is_a_start_a_summary_and_an_end(caplog):
    t = [0.0]
    faults = FaultLog(logging.getLogger("test.faults"), lambda: t[0], summary_s=20.0)
    with caplog.at_level(logging.INFO, "test.faults"):
        for _ in range(CYCLES_PER_MINUTE):
            faults.failed("setpoint", "battery setpoint not written", "inverter: timeout")
            faults.tick()
            t[0] += 0.25
        faults.succeeded("setpoint")
        faults.succeeded("setpoint")  # no second end line for one episode
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "battery setpoint not written: inverter: timeout",
        "battery setpoint not written: inverter: timeout (still, after 20.0 s, 81 failures)",
        "battery setpoint not written: inverter: timeout (still, after 40.0 s, 161 failures)",
        "battery setpoint not written: recovered after 60.0 s, 240 failures",
    ]


class _NotModbus(socketserver.BaseRequestHandler):
    """Answers every request with an HTTP error, as a web server on the wrong port would."""

    def handle(self) -> None:
        self.request.settimeout(5.0)
        try:
            while self.request.recv(512):
                self.request.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        except OSError:
            pass


def test_a_minute_of_a_dead_inverter_on_a_non_modbus_port_is_at_most_five_lines(tmp_path):
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _NotModbus)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    dead = f"127.0.0.1:{server.server_address[1]}"
    try:
        with sim_agent.example_sim() as ready:
            lines = _a_minute(tmp_path, ready["endpoints"], dead)
    finally:
        server.shutdown()
        server.server_close()
    started = next(i for i, ln in enumerate(lines) if "agent started" in ln)
    # A minute's cycles (and a little more) after the start: the lines the dead inverter
    # caused. The healthy devices' first "connected to" lines are not the fault's.
    during = [ln for ln in lines[started + 1:] if dead in ln or "setpoint" in ln
              or "inverter" in ln or "battery" in ln]  # fmt: skip
    assert 1 <= len(during) <= 5, during
    others = [ln for ln in lines[started + 1:] if ln not in during]
    # A loaded machine can starve the agent (a 100 ms period here) past the 1 s staleness of
    # every reading at once: the healthy devices' degraded modes then go on and off, each an
    # episode's lines, not a line a cycle (a fresh clone's parallel run, 2026-12-07: bms_stale
    # and a charger's, the same code green in every run before). Those are the load's, not
    # the fault's: bounded, not forbidden; a flood would be a line a cycle (240 here).
    starved = [ln for ln in others if "degraded mode o" in ln and "_stale" in ln]
    assert len(starved) <= 12, starved
    # Besides the fault: the healthy devices connecting, the start-up gate's two steps
    # (agent/control/startup.py), each once, and the stop.
    assert all("connected to" in ln or "agent stopped" in ln or "start-up: " in ln
               for ln in others if ln not in starved), others
    assert sum("start-up: " in ln for ln in others) <= 2, others
    assert not [ln for ln in lines if "pymodbus" in ln or "0x" in ln], lines


def _a_minute(tmp_path: Path, endpoints: dict, dead: str) -> list[str]:
    """`sems run` with the inverter at `dead`, for a minute's worth of cycles: its log."""
    config = sim_agent.example_config(endpoints, tmp_path / "agent.toml", inverter=dead)
    env = sim_agent.example_env(tmp_path, SEMS_CONTROL__PERIOD_S="0.1",
                                SEMS_PLANNER__ENABLED="false")
    log = tmp_path / "agent.log"
    with log.open("w") as err:
        agent = subprocess.Popen([*SEMS, "run", "--config", str(config)],
                                 stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=REPO)
    try:
        def cycles() -> int | None:
            done = subprocess.run([*SEMS, "status", "--json"], capture_output=True, text=True,
                                  env=env, timeout=60, cwd=REPO)  # fmt: skip
            return json.loads(done.stdout)["cycles"] if done.returncode == 0 else None

        deadline = time.monotonic() + 120
        while (first := cycles()) is None:
            assert agent.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        while (cycles() or 0) < first + CYCLES_PER_MINUTE:
            assert agent.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
    finally:
        agent.terminate()
        agent.wait(30)
    return log.read_text().splitlines()
