"""Issue 16: the scenario plan (`PlanRequest.scenarios`, `Tuning.scenarios`): one LP with
a copy of the plan per scenario, each with its own later slots and its own peak, all
sharing the first slot's decisions. Checked on small days whose optimum is worked out by
hand, and through the foresight that builds the scenarios from history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agent.energy.foresight import Foresight, Tuning, _split
from allocator.forecast import SessionRecord
from allocator.planner import (
    BatterySpec,
    ChargerSpec,
    PlanError,
    Planner,
    PlanRequest,
    Scenario,
    SessionSpec,
)

# A full 10 kWh battery (no losses) that can only discharge and may end the day empty; 10 kW of base load in
# slot 0 at 0.5 EUR/kWh, then 0.1 EUR/kWh; the day's peak is already 10 kW (sunk) and the
# demand charge 2 EUR/kW. One-hour slots, three of them.
BATTERY = BatterySpec(capacity=10.0, energy=10.0, max_charge_power=0.0,
                      max_discharge_power=10.0, min_soc=0.0, max_soc=1.0,
                      charge_efficiency=1.0, discharge_efficiency=1.0, end_energy=0.0)
# The busy scenario: an EV in slot 2 that must take 20 kWh within it.
CLUSTER = Scenario(1.0, [SessionSpec("~ev", "~c", departure_h=3.0, energy_needed=20.0,
                                     max_power=20.0, arrival_h=2.0)],
                   [ChargerSpec("~c", 20.0)])


def _day(**kw) -> PlanRequest:
    base = dict(import_price=[0.5, 0.1, 0.1], export_price=[0.0] * 3,
                pv_power=[0.0] * 3, base_load=[10.0, 0.0, 0.0], grid_capacity=100.0,
                chargers=[ChargerSpec("AC1", 22.0)], battery=BATTERY, demand_charge=2.0,
                peak_so_far=10.0, slot_hours=1.0, charging_efficiency=1.0)
    base.update(kw)
    return PlanRequest(**base)


def _weighted(p_busy: float) -> PlanRequest:
    return _day(scenarios=[Scenario(1.0 - p_busy), Scenario(p_busy, CLUSTER.sessions,
                                                            CLUSTER.chargers)])


def test_the_first_slot_hedges_between_the_scenarios_as_worked_out_by_hand():
    # Quiet day alone: the battery covers slot 0 at 0.5 EUR (saves 5 EUR, the peak is sunk).
    quiet = Planner().plan(_day())
    assert quiet.battery_power[0] == pytest.approx(10.0, abs=1e-6)
    # Discharging x kWh in slot 0: quiet costs 0.5 (10 - x); busy costs 0.5 (10 - x) +
    # 0.1 (10 + x) + 2 max(10, 10 + x) (slot 2 imports the rest of the EV's 20 kWh). The
    # slope in x is p (2 - 0.4) - (1 - p) 0.5: keep the battery from p > 0.238.
    kept = Planner().plan(_weighted(0.4))
    assert kept.battery_power[0] == pytest.approx(0.0, abs=1e-6)
    assert kept.grid_power[0] == pytest.approx(10.0, abs=1e-6)
    # The plan returned is the most probable scenario's (quiet, 0.6); its objective is the
    # scenarios' weighted costs, the sunk 10 kW peak's 20 EUR included: 0.6 x (5 + 20) +
    # 0.4 x (5 + 1 + 20) = 25.4 EUR (+ the LP's tie-breaking epsilons).
    assert kept.objective == pytest.approx(25.4, abs=0.01)
    assert not any(sid.startswith("~") for sid in kept.session_power)
    spent = Planner().plan(_weighted(0.2))
    assert spent.battery_power[0] == pytest.approx(10.0, abs=1e-6)
    # 0.8 x (0 + 20) + 0.2 x (0 + 2 + 2 x 20) = 24.4 EUR.
    assert spent.objective == pytest.approx(24.4, abs=0.01)


def test_identical_scenarios_make_the_plan_without_them():
    plain = Planner().plan(_day(sessions=CLUSTER.sessions, chargers=[
        ChargerSpec("AC1", 22.0), *CLUSTER.chargers]))
    same = Planner().plan(_day(scenarios=[
        Scenario(0.3, CLUSTER.sessions, CLUSTER.chargers),
        Scenario(0.7, CLUSTER.sessions, CLUSTER.chargers)]))
    assert same.objective == pytest.approx(plain.objective, abs=1e-6)
    for name in ("grid_power", "battery_power", "import_cap"):
        assert list(getattr(same, name)) == pytest.approx(list(getattr(plain, name)), abs=1e-6)
    assert same.peak == pytest.approx(plain.peak, abs=1e-6)


def test_a_real_sessions_first_slot_is_one_decision_for_all_scenarios():
    # A real EV plugged in now needs 20 kWh within 2 h; 0.1 EUR/kWh now, 0.5 after. The busy
    # scenario brings a second EV taking 20 kWh in slot 1. No battery, no peak yet.
    ev = SessionSpec("ev1", "AC1", departure_h=2.0, energy_needed=20.0, max_power=22.0)
    busy = Scenario(0.45, [SessionSpec("~b", "~b", departure_h=2.0, energy_needed=20.0,
                                       max_power=20.0, arrival_h=1.0)],
                    [ChargerSpec("~b", 20.0)])
    kw = dict(sessions=[ev], battery=None, peak_so_far=0.0, base_load=[0.0] * 3,
              import_price=[0.1, 0.5, 0.5])
    # Quiet alone spreads it (x = 10 kWh in slot 0: peak 10, the cheap slot's 0.4 EUR/kWh
    # saving is less than the 2 EUR/kW peak).
    alone = Planner().plan(_day(**kw))
    assert alone.session_power["ev1"][0] == pytest.approx(10.0, abs=1e-6)
    # Together, x in slot 0 for both: quiet pays 2 max(x, 20 - x) + 0.1 x + 0.5 (20 - x),
    # busy 2 max(x, 40 - x) + the same energy + 10; the slope above x = 10 is
    # 0.55 x 2 - 0.45 x 2 - 0.4 < 0, so x = 20: 0.55 x 42 + 0.45 x 52 = 46.5 EUR. The plan
    # returned is quiet's (the more probable), with the first slot they share.
    plan = Planner().plan(_day(scenarios=[Scenario(0.55), busy], **kw))
    assert plan.session_power["ev1"][0] == pytest.approx(20.0, abs=1e-6)
    assert plan.session_power["ev1"][1] == pytest.approx(0.0, abs=1e-6)
    assert plan.objective == pytest.approx(46.5, abs=0.01)
    assert plan.unmet["ev1"] == pytest.approx(0.0, abs=1e-9)


def test_bad_scenarios_are_refused():
    with pytest.raises(PlanError, match=r"scenarios\[1\].weight"):
        Planner().plan(_day(scenarios=[Scenario(1.0), Scenario(0.0)]))
    off_grid = Scenario(0.5, [SessionSpec("~x", "~x", departure_h=2.0, energy_needed=1.0,
                                          max_power=10.0, arrival_h=0.5)],
                        [ChargerSpec("~x", 10.0)])
    with pytest.raises(PlanError, match="scenarios: their first slots differ"):
        Planner().plan(_day(scenarios=[Scenario(0.5), off_grid]))


def test_days_are_split_into_groups_of_neighbouring_loads():
    assert _split([10.0, 100.0, 12.0, 95.0, 11.0], 2) == [[0, 4, 2], [3, 1]]
    assert _split([10.0, 100.0, 12.0, 95.0, 11.0], 1) == [[0, 4, 2, 3, 1]]
    assert _split([5.0, 5.0, 5.0], 2) == [[0, 1, 2]]  # one distinct value: one group
    assert _split([1.0, 2.0, 10.0, 20.0], 3) == [[0, 1], [2], [3]]


def _windows() -> list[tuple[datetime, float, list[SessionRecord]]]:
    """Four quiet days (one 30 kWh fast charge at 10:00) and two with a cluster (four of
    them at 15:00), all weekdays."""
    monday = datetime(2026, 3, 2, tzinfo=UTC)
    out = []
    for d in range(6):
        start = monday + timedelta(days=d if d < 5 else 7)
        at = start + timedelta(hours=15 if d >= 4 else 10)
        n = 4 if d >= 4 else 1
        out.append((start, 24.0, [SessionRecord(at, at + timedelta(minutes=40), 30.0, 150.0)
                                  for _ in range(n)]))
    return out


def test_the_foresight_builds_one_scenario_per_group_weighted_by_its_days():
    windows = _windows()
    chargers = {"DC1": (150.0, 2)}
    now = datetime(2026, 3, 10, 6, 0, tzinfo=UTC)  # a Tuesday
    one = Foresight.from_history(Tuning(), chargers, windows)
    sessions, _c, scen = one.extend([], [], now, 96, 0.25, None)
    assert scen == [] and sessions  # the expected day alone, as before
    two = Foresight.from_history(Tuning(scenarios=2), chargers, windows)
    sessions, chargers_out, scen = two.extend([], [], now, 96, 0.25, None)
    assert sessions == [] and chargers_out == []
    assert [s.weight for s in scen] == pytest.approx([4 / 6, 2 / 6])
    quiet, busy = (sum(x.energy_needed for x in s.sessions) for s in scen)
    # Each group's days and its share of the new-station prior: the busy group expects
    # about four times the quiet one's fast charging (the prior adds the same to both).
    assert busy > 2.0 * quiet
    # Expected sessions of a group only (the ids the callers drop from what they apply).
    assert all(x.session_id.startswith("~expected") for s in scen for x in s.sessions)
    # Without history: no scenarios, the reserve stands in.
    assert Foresight.from_history(Tuning(scenarios=2), chargers, []).extend(
        [], [], now, 96, 0.25, None) == ([], [], [])


@pytest.mark.parametrize("days", [False, True])
def test_the_daemon_plans_with_the_replays_scenarios(days):
    """The scenarios go through the one code path (Foresight.extend) in both: the daemon's
    first plans of a generated day equal the replay's with them on (groups' forecasts, or
    their median days' own sessions)."""
    from hardware_sim.station_days import with_history

    from agent.energy.planning import PlannerTask
    from agent.energy.replay import PlanPoint, parse_day, simulate
    from agent.model.clock import ManualClock
    from agent.store.db import connect
    from tests.planner import test_daemon_equals_replay as der

    doc, hist = with_history(4, 16)
    day, history = parse_day(der._whole_minutes(doc)), [parse_day(h) for h in hist]
    tuning = Tuning(scenarios=2, scenario_days=days)
    points: list[PlanPoint] = []
    simulate(day, "planner", history=history, tuning=tuning,
             horizon_slots=round(der.HORIZON_H / day.slot_hours), on_plan=points.append)
    compared = points[:12]
    assert all(len(p.request.scenarios) == 2 for p in compared)
    assert any("-day-" in x.session_id for p in compared for sc in p.request.scenarios
               for x in sc.sessions) == days
    db = connect(":memory:")
    der._history_rows(db, history)
    clock = ManualClock(wall=day.start)
    forecasts = der.Forecasts()
    for i in range(len(day.import_price)):
        forecasts.observe(day.start + timedelta(hours=i * day.slot_hours),
                          float(day.pv[i]), float(day.base_load[i]))
    b = day.battery
    assert b is not None
    task = PlannerTask(der._settings(day), clock, db, der._signals(db, day), forecasts,
                       billing_day=lambda _now: (day.start + timedelta(hours=day.hours),
                                                 b.soc_start * 100.0))
    task.tuning = tuning
    for point in compared:
        plan = der._daemon_plan(task, clock, day, point)
        der._assert_same(plan, point.plan, point.t)
        assert plan.objective == pytest.approx(point.plan.objective, abs=1e-3)
