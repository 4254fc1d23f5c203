"""What a technician reads: `sems read` by profile point name (integers as integers), a
failed read that says why and what to run next, short ids and times by default (`--wide`
for all). Against `sems-sim` (a real Modbus server that, like an RS-485 device, stays silent
for a unit id it does not own) and plain loopback sockets for the broken cases."""

from __future__ import annotations

import json
import os
import re
import socket
import socketserver
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sim_agent

ROOT = Path(__file__).resolve().parents[2]
SEMS = [str(Path(sys.executable).parent / "sems")]
ENV = {**os.environ, "NUMBA_CACHE_DIR": str(ROOT / ".numba-cache")}
DAY = ROOT / "hardware-sim" / "scenarios" / "reference-day.json"

pytestmark = pytest.mark.timeout(120)


def sems(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SEMS, *args], capture_output=True, text=True, timeout=60, env=ENV,
                          cwd=ROOT)  # fmt: skip


@pytest.fixture(scope="module")
def sim():
    with sim_agent.example_sim() as ready:
        yield ready["endpoints"]


def test_read_by_point_name_and_every_point_of_a_profile(sim):
    meter = sim["meter"]["tcp"]
    r = sems("read", "--tcp", meter, "--profile", "sim-meter", "power_total", "--json")
    assert r.returncode == 0, r.stderr
    (row,) = json.loads(r.stdout)["values"]
    assert row["name"] == "power_total" and row["unit"] == "W" and isinstance(row["value"], float)
    r = sems("read", "--tcp", meter, "--profile", "sim-meter")
    assert r.returncode == 0 and r.stdout.splitlines()[0].split()[:3] == ["point", "value", "unit"]
    assert re.search(r"^power_l1\s+-?\d", r.stdout, re.M)
    # A charger's per-connector point, for connector 2; an enum prints its meaning.
    charger = sim["chargers"]["CP1"]
    r = sems("read", "--tcp", charger["tcp"], "--unit", str(charger["unit"]), "--profile",
             "sim-charger", "state", "--connector", "2")
    assert r.returncode == 0 and re.search(r"^state\s+A\s", r.stdout, re.M), r.stdout
    r = sems("read", "--tcp", meter, "--profile", "sim-meter", "nope")
    assert r.returncode == 2 and "no point 'nope' in sim-meter (points: power_total" in r.stderr


def test_a_uint16_prints_as_an_integer(sim):
    charger = sim["chargers"]["CP1"]
    r = sems("read", "--tcp", charger["tcp"], "--unit", str(charger["unit"]), "0", "--count", "2")
    assert r.returncode == 0, r.stderr
    values = [ln.split()[-1] for ln in r.stdout.splitlines()[2:]]
    assert values and all(v.isdigit() for v in values), r.stdout


class _Http(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.settimeout(5.0)
        if self.request.recv(256):
            self.request.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")


def test_a_failed_read_says_why_and_what_to_run_next(sim):
    meter = sim["meter"]["tcp"]
    r = sems("read", "--tcp", meter, "--unit", "9", "0", "--timeout", "0.3")
    assert r.returncode == 1
    assert f"{meter} accepts connections but unit 9 does not answer (wrong unit id?)" in r.stderr
    assert f"try: sems scan --tcp {meter}" in r.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    r = sems("read", "--tcp", f"127.0.0.1:{dead}", "0", "--timeout", "0.3")
    assert r.returncode == 1 and "connection refused by 127.0.0.1:" in r.stderr
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Http)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        r = sems("write", "--tcp", f"127.0.0.1:{port}", "0", "1", "--timeout", "0.3")
        assert r.returncode == 1 and "does not speak Modbus TCP" in r.stderr, r.stderr
        assert "HTTP/1.1 400" in r.stderr
    finally:
        server.shutdown()
        server.server_close()
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr  # one line


def test_plan_shows_short_times_by_default_and_all_with_wide():
    short = sems("plan", "--scenario", str(DAY), "--slots", "4")
    wide = sems("plan", "--scenario", str(DAY), "--slots", "4", "--wide")
    assert short.returncode == wide.returncode == 0, short.stderr
    assert "plan from 06-17 12:00:00" in short.stdout and "T12:00:00" not in short.stdout
    assert "2026-06-17T12:00:00" in wide.stdout
    assert max(len(ln) for ln in short.stdout.splitlines()) <= 160
