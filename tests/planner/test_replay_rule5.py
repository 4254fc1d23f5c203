"""Issue 16, one code path: under a plan the replay's battery does what the allocator's rule 5
returns for the step's request (the plan's setpoint, allocator/battery.py), as the daemon's
does, not a dispatch of the replay's own."""

from __future__ import annotations

import copy

import pytest

from agent.energy.replay import _steps, parse_day, simulate
from allocator import allocate
from tests.planner.test_replay import small_day


def test_replay_battery_power_is_what_allocate_returns_with_the_plans_setpoint():
    day = parse_day(small_day())
    calls: list[tuple[dict, dict]] = []

    def spy(request: dict) -> dict:
        result = allocate(request)
        calls.append((copy.deepcopy(request), result))
        return result

    r = simulate(day, "planner", allocate=spy)
    steps = _steps(day, round(day.slot_hours * 60))  # 60 s steps: one allocate call each
    assert len(calls) == len(steps)
    discharge = [0.0] * len(r.ledger.intervals)
    charge = [0.0] * len(r.ledger.intervals)
    for (_, step_h, slot), (_, result) in zip(steps, calls, strict=True):
        kw = result["batteryPower"]
        discharge[slot] += max(kw, 0.0) * step_h
        charge[slot] += max(-kw, 0.0) * step_h
    # Within the result's rounding (1e-6 kW, which the replay holds to the SoC window).
    for iv in r.ledger.intervals:
        assert iv.battery_discharge_kwh == pytest.approx(discharge[iv.index], abs=1e-6)
        assert iv.battery_charge_kwh == pytest.approx(charge[iv.index], abs=1e-6)
    assert sum(discharge) > 1.0 and sum(charge) > 1.0  # the battery works on this day
    # Every step followed a plan (none failed on this day) through the battery block's
    # setpoint, and the battery kept to the plan's direction (apply_plan's limits).
    setpoints = [request["battery"]["setpoint"] for request, _ in calls]
    assert sum(abs(sp) > 0.1 for sp in setpoints) > len(calls) // 2
    for sp, (_, result) in zip(setpoints, calls, strict=True):
        kw = result["batteryPower"]
        assert kw <= 1e-9 if sp < 0 else kw >= -1e-9
