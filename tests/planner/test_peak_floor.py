"""Issue 16: the peak floor learnt from history (`Tuning.peak_floor`): the plan takes the
day's peak to reach at least a factor x the median of the history days' optimal peaks, so
it does not spend the battery shaving below a peak the day will most likely set anyway.
The planner must hold its peak variable at the floor, the foresight must work the floor
out from the history days' sessions (and only from them), and without history or with the
knob off nothing changes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hardware_sim.station_days import with_history

from agent.energy.foresight import Foresight, Tuning
from agent.energy.planning import PlannerTask
from agent.energy.replay import PlanPoint, learn_arrivals, parse_day, simulate
from agent.model.clock import ManualClock
from agent.store.db import connect
from allocator.forecast import SessionRecord
from allocator.planner import ChargerSpec, PlanError, Planner, PlanRequest, SessionSpec
from tests.planner import test_daemon_equals_replay as der

EFF = 0.95  # PlanRequest.charging_efficiency's default
CHARGERS = {"CP1": (50.0, 1)}


def _request(slots: int = 24, **kw) -> PlanRequest:
    """A flat-priced day with a demand charge and nothing else on the site."""
    base = dict(import_price=[0.2] * slots, export_price=[0.0] * slots,
                pv_power=[0.0] * slots, base_load=[0.0] * slots, grid_capacity=200.0,
                chargers=[ChargerSpec("CP1", 50.0)], demand_charge=10.0)
    base.update(kw)
    return PlanRequest(**base)


def _one_ev(kwh: float) -> list[SessionSpec]:
    return [SessionSpec("ev", "CP1", departure_h=3.0, energy_needed=kwh, max_power=50.0,
                        arrival_h=2.0)]


def test_the_plan_holds_its_peak_at_least_at_the_floor():
    free = Planner().plan(_request(sessions=_one_ev(10.0)))
    # With a demand charge and flat prices the EV is spread over its hour: 10 kWh / 0.95.
    assert free.peak == pytest.approx(10.0 / EFF, rel=1e-4)
    floored = Planner().plan(_request(sessions=_one_ev(10.0), peak_floor=30.0))
    assert floored.peak == pytest.approx(30.0, rel=1e-6)
    # The allocator may import up to the floor in every sub-interval: below it nothing is
    # worth shaving (the import cap is what the daemon and the replay follow).
    assert min(floored.import_cap) >= 30.0 - 1e-6
    # A floor the load exceeds changes nothing.
    above = Planner().plan(_request(sessions=_one_ev(10.0), peak_floor=5.0))
    assert above.peak == pytest.approx(free.peak, rel=1e-6)
    with pytest.raises(PlanError, match="peak_floor"):
        Planner().plan(_request(peak_floor=-1.0))


def _window(start: datetime, kwh: float) -> tuple[datetime, float, list[SessionRecord]]:
    """A history day with one EV from 2 h to 3 h after its start (whose optimal peak on a
    flat-priced site without battery is kwh / 0.95 kW)."""
    return (start, 24.0, [SessionRecord(start + timedelta(hours=2), start + timedelta(hours=3),
                                        kwh, 50.0)])


MONDAY = datetime(2026, 3, 2, tzinfo=UTC)


def test_the_floor_is_the_factor_times_the_median_optimal_peak_of_the_history_days():
    windows = [_window(MONDAY + timedelta(days=d), e) for d, e in enumerate((10.0, 30.0, 20.0))]
    fs = Foresight.from_history(Tuning(peak_floor=0.5), CHARGERS, windows)
    now = MONDAY + timedelta(days=3)
    req = fs.with_peak_floor(_request(), now)
    assert req.peak_floor == pytest.approx(0.5 * 20.0 / EFF, rel=1e-4)
    # Worked out once per foresight (one per day): a later request of that day keeps it,
    # whatever its series.
    later = fs.with_peak_floor(_request(slots=8, demand_charge=1.0), now + timedelta(hours=5))
    assert later.peak_floor == req.peak_floor
    plan = Planner().plan(replace(req, sessions=_one_ev(2.0)))
    assert plan.peak >= req.peak_floor - 1e-6
    # A history EV beyond the plan's horizon counts only for its share inside it: with a
    # 2.5 h horizon half of each EV's hour is left, the median 10 kWh in half an hour.
    short = Foresight.from_history(Tuning(peak_floor=1.0), CHARGERS, windows)
    assert short.with_peak_floor(_request(slots=10), now).peak_floor == \
        pytest.approx(10.0 / EFF / 0.5, rel=1e-4)


def test_the_floor_from_the_same_day_type_only():
    # Three quiet weekdays, a busy weekend; the plan's day a Saturday.
    windows = [_window(MONDAY + timedelta(days=d), 10.0) for d in range(3)]
    windows += [_window(MONDAY + timedelta(days=d), 40.0) for d in (5, 6)]
    saturday = MONDAY + timedelta(days=12)
    every = Foresight.from_history(Tuning(peak_floor=1.0), CHARGERS, windows)
    assert every.with_peak_floor(_request(), saturday).peak_floor == \
        pytest.approx(10.0 / EFF, rel=1e-4)
    same = Foresight.from_history(
        Tuning(peak_floor=1.0, peak_floor_same_day_type=True), CHARGERS, windows)
    assert same.with_peak_floor(_request(), saturday).peak_floor == \
        pytest.approx(40.0 / EFF, rel=1e-4)
    # A Tuesday takes the weekdays.
    tuesday = MONDAY + timedelta(days=8)
    same = Foresight.from_history(
        Tuning(peak_floor=1.0, peak_floor_same_day_type=True), CHARGERS, windows)
    assert same.with_peak_floor(_request(), tuesday).peak_floor == \
        pytest.approx(10.0 / EFF, rel=1e-4)


def test_the_floor_is_inert_without_history_or_when_off():
    now = MONDAY + timedelta(days=3)
    req = _request()
    # Less than a day observed: no forecast, so no floor either (the reserve stands in).
    young = Foresight.from_history(Tuning(peak_floor=0.8), CHARGERS,
                                   [(MONDAY, 12.0, _window(MONDAY, 30.0)[2])])
    assert young.with_peak_floor(req, now) is req
    assert Foresight.from_history(Tuning(peak_floor=0.8), CHARGERS, []) \
        .with_peak_floor(req, now) is req
    windows = [_window(MONDAY + timedelta(days=d), 30.0) for d in range(3)]
    assert Foresight.from_history(Tuning(), CHARGERS, windows).with_peak_floor(req, now) is req
    # A replay without history days plans with no floor.
    doc, _hist = with_history(2, 13)
    day = parse_day(doc)
    floors: list[float] = []
    simulate(day, "planner", tuning=Tuning(peak_floor=0.8), horizon_slots=8,
             on_plan=lambda p: floors.append(p.request.peak_floor))
    assert floors and set(floors) == {0.0}
    assert learn_arrivals(day, [], Tuning(peak_floor=0.8)).with_peak_floor(req, now) is req


def test_the_daemon_plans_with_the_replays_floor():
    """The floor goes through the one code path (Foresight.with_peak_floor) in both: the
    daemon's first plans of a generated day equal the replay's with the floor on."""
    doc, hist = with_history(4, 16)
    day, history = parse_day(der._whole_minutes(doc)), [parse_day(h) for h in hist]
    tuning = Tuning(peak_floor=0.8)
    points: list[PlanPoint] = []
    simulate(day, "planner", history=history, tuning=tuning,
             horizon_slots=round(der.HORIZON_H / day.slot_hours), on_plan=points.append)
    compared = points[:12]
    floor = compared[0].request.peak_floor
    assert floor > 0 and all(p.request.peak_floor == floor for p in points)
    # It binds (the plans' peak is the floor), so a daemon without it would plan otherwise.
    assert any(p.plan.peak == pytest.approx(floor, abs=1e-6) for p in compared)
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
        assert task._current is not None
        der._assert_same(plan, point.plan, point.t)
        assert plan.peak >= floor - 1e-6
