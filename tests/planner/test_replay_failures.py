"""A re-plan that fails or runs out of solver time never stops a replay: the allocator
shares plainly until a plan succeeds (as the daemon's PlannerTask), and the failures are
counted in the result."""

from __future__ import annotations

import json

import pytest

import agent.energy.replay
from agent.cli import main
from agent.energy.replay import DayError, parse_day, run, simulate
from allocator.planner import PlanError, Planner

from .test_replay import small_day


def test_every_replan_timing_out_leaves_fair_sharing_and_is_counted():
    day = parse_day(small_day())
    r = simulate(day, "planner", solve_time_limit=1e-9)  # HiGHS stops at once
    fair = simulate(day, "uncontrolled")
    # One attempt every 15 simulated minutes plus one per arrival mid-period (E3, E1, E2).
    assert r.plan_failures == 6 * 4 + 3
    assert r.plan_solve_seconds == []
    assert set(r.plan_errors) == {"planner: HiGHS returned Time limit reached"}
    # Without a plan the EVs are served as plain fair sharing serves them.
    assert r.energy_delivered == pytest.approx(fair.energy_delivered, abs=1e-6)
    assert r.unmet_energy == pytest.approx(fair.unmet_energy, abs=1e-6)


def test_a_plan_is_dropped_when_a_later_replan_fails(monkeypatch):
    """The first plan (made before E1 and E2 arrive) would starve them under its import
    cap if it were kept; after the failed arrival re-plan the EVs get fair sharing."""
    calls = []

    class FailsAfterFirst(Planner):
        def plan(self, req):
            calls.append(len(req.sessions))
            if len(calls) > 1:
                raise PlanError("planner: HiGHS returned Time limit reached")
            return super().plan(req)

    monkeypatch.setattr(agent.energy.replay, "Planner", FailsAfterFirst)
    day = parse_day(small_day())
    r = simulate(day, "planner")
    fair = simulate(day, "uncontrolled")
    assert len(r.plan_solve_seconds) == 1 and r.plan_failures == len(calls) - 1 > 0
    assert r.energy_delivered == pytest.approx(fair.energy_delivered, abs=0.5)


def test_report_and_cli_carry_the_failures(capsys, tmp_path):
    day_file = tmp_path / "day.json"
    day_file.write_text(json.dumps(small_day(hours=3)))
    assert main(["replay", "--scenario", str(day_file), "--json",
                 "--solve-time-limit", "1e-9"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["failedPlans"] == 3 * 4 + 3
    assert report["energyDelivered"] > 0
    assert main(["replay", "--scenario", str(day_file), "--solve-time-limit", "1e-9"]) == 0
    assert "failed re-plans (fair sharing)" in capsys.readouterr().out
    assert run(parse_day(small_day(hours=3)), "planner")["failedPlans"] == 0


def test_solve_time_limit_must_be_positive(capsys, tmp_path):
    with pytest.raises(DayError, match=r"^solve_time_limit: must be > 0"):
        simulate(parse_day(small_day(hours=3)), "planner", solve_time_limit=0.0)
    day_file = tmp_path / "day.json"
    day_file.write_text(json.dumps(small_day(hours=3)))
    assert main(["replay", "--scenario", str(day_file), "--solve-time-limit", "-1"]) == 2
    assert "--solve-time-limit: must be > 0" in capsys.readouterr().err


def test_an_optimum_out_of_solver_time_is_reported_not_raised():
    """The perfect-foresight optimum is a yardstick: when HiGHS runs out of time on it, the
    replay's own figures still come out and the report says why the optimum is missing."""
    report = run(parse_day(small_day()), "planner", optimum_time_limit=1e-9)
    assert report["optimumCost"] is None
    assert report["optimumError"] == "planner: HiGHS returned Time limit reached"
    assert report["cost"] > 0 and report["energyDelivered"] > 0
    json.dumps(report)  # still valid JSON for `sems replay --json`
