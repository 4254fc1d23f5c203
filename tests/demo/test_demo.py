"""`sems demo` as a user runs it: a real simulator, agent and (when installed) Mosquitto as
child processes. Checks the summary against the simulator's truth and that no child
outlives the demo, whether it ends by itself or by SIGINT / SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SEMS = Path(sys.executable).with_name("sems")
HAS_MOSQUITTO = any(os.access(p, os.X_OK) for p in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto"))
EXPECTED_CHILDREN = {"sems-sim", "sems", "mosquitto"} if HAS_MOSQUITTO else {"sems-sim", "sems"}

pytestmark = pytest.mark.timeout(120)


def start_demo(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba-cache"))
    env["TMPDIR"] = str(tmp_path)  # the demo's work dir, left behind only by SIGKILL
    return subprocess.Popen([str(SEMS), "demo", "--json", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def children_of(pid: int) -> dict[int, str]:
    """pid -> program name (basename of argv[0] or of the script run by python)."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid != pid or not argv[0]:
            continue
        names = [Path(a.decode()).name for a in argv[:2]]
        found[int(entry.name)] = next((n for n in names if n in EXPECTED_CHILDREN), names[0])
    return found


def wait_for_children(demo: subprocess.Popen[str]) -> dict[int, str]:
    """Read the demo's stderr up to its "agent running" line (it comes once the agent has
    told the demo READY over sd_notify), then list the processes it started."""
    assert demo.stderr is not None
    lines = []
    for line in demo.stderr:  # ends at the demo's exit at the latest
        lines.append(line)
        if "agent running" in line:
            break
    children = children_of(demo.pid)
    assert EXPECTED_CHILDREN <= set(children.values()), (children, lines, demo.poll())
    pids = lines[-1].split("(pids: ", 1)[1].rstrip(")\n")
    assert {int(p.split()[-1]) for p in pids.split(", ")} == set(children)
    return children


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def finish(demo: subprocess.Popen[str], timeout_s: float) -> dict[str, Any]:
    out, err = demo.communicate(timeout=timeout_s)
    assert demo.returncode == 0, err
    return json.loads(out)


def assert_gone(children: dict[int, str]) -> None:
    left = {pid: name for pid, name in children.items() if alive(pid)}
    assert not left, f"left behind: {left}"


def test_headless_run_summarises_a_controlled_station(tmp_path: Path) -> None:
    demo = start_demo(tmp_path, "--seconds", "15")
    children = wait_for_children(demo)
    s = finish(demo, timeout_s=90)
    assert_gone(children)
    assert list(tmp_path.iterdir()) == []  # its work dir removed

    assert s["interrupted"] is False
    assert 14.5 <= s["wallSeconds"] <= 20
    # The station ran accelerated (60x), the agent in real time at 4 Hz.
    assert s["simulatedSeconds"] >= 50 * s["wallSeconds"]
    assert s["cycles"] >= 2 * s["wallSeconds"], s
    assert set(s["cycle_ms"]) == {"p50", "p99", "max"}
    assert 0 < s["cycle_ms"]["p50"] <= s["cycle_ms"]["p99"] <= s["cycle_ms"]["max"]
    assert s["overruns"] <= 0.05 * s["cycles"]
    # The simulator's truth: within capacity, but for the odd agent period after a step in
    # the site's base load (15 simulated seconds at 60x: the agent runs in real time).
    assert s["gridCapacity"] > 0
    assert 0 < s["maxGridImport"] <= 1.05 * s["gridCapacity"]
    assert s["secondsOverCapacity"] <= 0.01 * s["simulatedSeconds"]
    assert s["wallSecondsOverCapacity"] <= 1.0
    # EVs arrived and the agent's sessions and energy match what the chargers delivered.
    assert s["sessionsStarted"] > 0
    assert 0 <= s["sessionsStopped"] <= s["sessionsStarted"]
    assert s["energyDeliveredKwh"] > 0
    assert s["energyDeliveredKwh"] == pytest.approx(s["simulatorEnergyKwh"], rel=0.15, abs=1.0)
    if HAS_MOSQUITTO:
        assert s["uplinkMessages"].get("sessions", 0) >= s["sessionsStarted"]
        assert s["uplinkMessages"].get("state", 0) >= 1
    # Every child stopped on SIGTERM by itself, none needed SIGKILL.
    assert s["exitStatus"] == {name: 0 for name in s["exitStatus"]}
    assert {"agent", "simulator"} <= set(s["exitStatus"])
    shows_the_point(s)


def shows_the_point(s: dict[str, Any]) -> None:
    """Within its first 10 s the demo shows what the agent is for (agent/demo/acts.py):
    sharing under the station limit, the battery shaving the peak, a session capped at its
    draw, and a grid cut through the API obeyed within a cycle or two (counted in the
    agent's cycles, not in seconds) by the simulator's meter."""
    seen = s["firstSeenWallSeconds"]
    for what in ("binding:station", "binding:cap", "battery discharging"):
        assert what in seen and seen[what] <= 10.0, (what, seen)
    assert s["batteryMaxDischargeKw"] > 10
    cut = s["cut"]
    assert cut["kw"] == pytest.approx(s["gridCapacity"] / 2, abs=10)
    assert cut["appliedCycles"] is not None and cut["appliedCycles"] <= 2, cut
    assert cut["peakAfterKw"] <= cut["kw"] * 1.05, cut
    assert len(s["staged"]) == 4
    # One energy total, the operator's figures, and the words they are printed in.
    assert s["energyToEvsKwh"] == pytest.approx(s["simulatorEnergyKwh"], abs=0.1)
    assert s["sessionsServed"] >= 3
    assert s["uncontrolledPeakKw"] > s["maxGridImport"]
    assert s["savedEur"] == pytest.approx(
        (s["uncontrolledPeakKw"] - s["maxGridImport"]) * s["demandChargeEurKw"], abs=0.05)
    from agent.demo.runner import _human_summary

    words = _human_summary(s)
    assert f"kept under the {s['gridCapacity']:g} kW connection" in words
    assert f"{s['sessionsServed']} sessions served, {s['energyToEvsKwh']:.1f} kWh" in words
    assert f"{s['savedEur']:.2f} EUR saved against uncontrolled charging" in words
    assert words.count("kWh") == 1  # one energy total


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_mid_run_stops_everything(sig: signal.Signals, tmp_path: Path) -> None:
    demo = start_demo(tmp_path)  # no --seconds: runs until a signal
    children = wait_for_children(demo)
    time.sleep(1)  # let the agent run a few cycles
    demo.send_signal(sig)
    s = finish(demo, timeout_s=40)
    assert_gone(children)
    assert s["interrupted"] is True
    assert s["exitStatus"]["agent"] == 0  # the agent shut down itself (fallback limits)
    assert all(code == 0 for code in s["exitStatus"].values()), s["exitStatus"]


def test_children_die_with_a_killed_demo(tmp_path: Path) -> None:
    """SIGKILL gives the demo no chance to clean up: the kernel's parent-death signal must."""
    demo = start_demo(tmp_path)
    children = wait_for_children(demo)
    demo.kill()
    demo.communicate(timeout=10)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(alive(pid) for pid in children):
        time.sleep(0.1)
    assert_gone(children)
