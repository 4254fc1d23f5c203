"""`sems plan --scenario FILE`: a whole day planned offline with every EV known ahead."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from agent.energy.replay import optimum, parse_day

from .test_replay import small_day

SEMS = [str(Path(sys.executable).parent / "sems")]


def sems(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SEMS, *args], capture_output=True, text=True, timeout=120,
                          env=os.environ.copy())


def test_plan_of_a_day_file_as_json_and_table(tmp_path):
    doc = small_day()
    f = tmp_path / "day.json"
    f.write_text(json.dumps(doc))
    r = sems("plan", "--scenario", str(f), "--json")
    assert r.returncode == 0, r.stderr
    view = json.loads(r.stdout)
    # The same LP as the replay's perfect-foresight optimum: the same planned peak.
    assert view["peakKw"] == round(optimum(parse_day(doc))["peak"], 2)
    assert view["slots"][0]["start"] == doc["series"][0]["start"].replace("Z", "+00:00")
    planned = {sid for row in view["slots"] for sid in row["sessions"]}
    assert planned == {ev["sessionId"] for ev in doc["evs"]}
    for row in view["slots"]:  # a connected session is planned within its vehicle's maximum
        assert all(abs(kw) <= 150.0 + 1e-6 for kw in row["sessions"].values())
    r = sems("plan", "--scenario", str(f), "--slots", "3")
    assert r.returncode == 0 and "planned peak" in r.stdout and "more slots" in r.stdout


def test_plan_errors_are_one_line(tmp_path):
    r = sems("plan", "--scenario", str(tmp_path / "missing.json"))
    assert r.returncode == 2 and r.stdout == "" and r.stderr.count("\n") == 1
    bad = small_day()
    del bad["station"]["gridCapacity"]
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(bad))
    r = sems("plan", "--scenario", str(f))
    assert r.returncode == 2 and "gridCapacity" in r.stderr and "Traceback" not in r.stderr
