"""`make bench`'s OCPP burst case (issue 14): bench/run_all.py runs it and renders its table
and target into docs/performance.md from the benchmark's --json output.

The sample rows are what `bench/ocpp.py --burst --sizes 100 --json` printed on this machine
(2026-12-05), with the cycle p99 varied to cross the 40 ms target both ways.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from bench import run_all

# Recorded: `bench/ocpp.py --json --burst --sizes 100 --seconds 10`, 2026-12-05 16:27 UTC.
RECORDED_ROW: dict[str, Any] = {
    "charge_points": 100, "version": "1.6", "burst": True, "connected": 100,
    "period_ms": 250.0, "cycles": 40, "overruns": 0,
    "cycle_ms": {"p50": 5.547, "p99": 44.016, "max": 59.275}, "cpu_share": 0.1,
    "calls": 937, "errors": 0, "deferred_increases": 401, "increases_per_cycle": 25,
    "rtt_ms_p50": 23.7, "rtt_ms_p99": 55.9,
    "meter_read_ms": {"p50": 1.742, "p99": 11.923, "max": 17.086},
}  # fmt: skip


def _data(rows: list[dict[str, Any]] | None = None, **bench: Any) -> dict[str, Any]:
    outcome = bench or {"result": {"rows": rows if rows is not None else [RECORDED_ROW],
                                   "target": "100 charge points, cycle p99 < 40 ms"}}
    outcome.update(wallS=21.0, args="--burst --sizes 100 --seconds 20", note="burst note")
    machine = {"date": "2026-12-05 16:27 UTC", "nproc": 2, "cpu": "test CPU", "memGb": 23.5,
               "kernel": "6", "python": "3.11", "loadBefore": [0.9, 0.4, 0.3],
               "loadAfter": [0.7, 0.4, 0.3], "totalWallS": 21.0}  # fmt: skip
    return {"machine": machine, "benches": {"ocpp-burst": outcome}}


def _section(doc: str) -> str:
    start = doc.index("## OCPP bursts")
    end = doc.find("\n## ", start + 1)
    return doc[start:] if end < 0 else doc[start:end]


def test_make_bench_runs_the_burst_case_at_the_targets_size() -> None:
    case = next(b for b in run_all.BENCHES if b.name == "ocpp-burst")
    assert case.script == "bench/ocpp.py"
    assert "--burst" in case.args
    sizes = case.args[case.args.index("--sizes") + 1]
    assert run_all.BURST_TARGET_CPS in [int(x) for x in sizes.split(",")]
    # The steady case stays as it was, beside it.
    assert any(b.name == "ocpp" and "--burst" not in b.args for b in run_all.BENCHES)


def test_recorded_burst_is_tabled_and_its_missed_target_said() -> None:
    doc = run_all.render(_data())
    section = _section(doc)
    assert "| 100 | 100 | 40 | 5.5 | 44.0 | 59.3 | 0 | 10.0 % | 937 | 401 | 0 | 23.7 | 55.9 |" in section
    assert "cycle p99 under 40 ms in bursts: **not met** (44.0 ms, 100 connected)" in section
    assert "`[ocpp] increases_per_cycle` (25)" in section
    # The run table names the case and its cost.
    assert "| ocpp-burst | `--burst --sizes 100 --seconds 20` | burst note | 21 s |" in doc


def test_a_burst_under_the_target_is_met() -> None:
    row = copy.deepcopy(RECORDED_ROW)
    row["cycle_ms"]["p99"] = 14.1
    section = _section(run_all.render(_data([row])))
    assert "in bursts: met (14.1 ms, 100 connected)" in section


def test_the_target_is_missed_when_a_charge_point_did_not_connect() -> None:
    row = copy.deepcopy(RECORDED_ROW)
    row["cycle_ms"]["p99"], row["connected"] = 14.1, 99
    assert "in bursts: **not met** (14.1 ms, 99 connected)" in _section(run_all.render(_data([row])))


def test_a_run_without_100_charge_points_says_the_target_was_not_measured() -> None:
    row = copy.deepcopy(RECORDED_ROW)
    row["charge_points"] = row["connected"] = 10
    section = _section(run_all.render(_data([row])))
    assert "not measured (no run at 100)" in section
    assert ": met" not in section and "**not met**" not in section


def test_a_failed_or_skipped_burst_run_is_said_so() -> None:
    failed = _section(run_all.render(_data(error="exit 1: boom")))
    assert "**The OCPP burst benchmark failed**: exit 1: boom" in failed
    skipped = run_all.render({"machine": _data()["machine"], "benches": {}})
    assert "_Not run this time" in _section(skipped)


def test_from_raw_renders_the_burst_section_without_running_anything(tmp_path: Path) -> None:
    raw, out, readme = tmp_path / "raw.json", tmp_path / "perf.md", tmp_path / "README.md"
    raw.write_text(json.dumps(_data()))
    readme.write_text("no bench markers here\n")
    assert run_all.main(["--from-raw", str(raw), "--out", str(out), "--readme", str(readme)]) == 0
    assert "**not met** (44.0 ms" in _section(out.read_text())
    assert readme.read_text() == "no bench markers here\n"


@pytest.mark.parametrize("cap", [25, 10])
def test_the_pacing_cap_comes_from_the_run(cap: int) -> None:
    row = dict(RECORDED_ROW, increases_per_cycle=cap)
    assert f"`[ocpp] increases_per_cycle` ({cap})" in _section(run_all.render(_data([row])))
