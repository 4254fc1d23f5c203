"""Issue 16: `sems status` says in words why the plan holds a session. Stepped control
cycles on a manual clock with the daemon's planner task: the plan holds an EV for a
cheaper night, slows two EVs to keep the day's peak down for the demand charge, and an EV
it does not know yet is slowed by its import cap; the reasons ride on the decision (the
live read model's `held`, beside `binding`) and read as the technician sees them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from cycle_helpers import Station, settings

from agent.cli.commands.status import held_words
from agent.energy.planning import PlannerTask
from agent.model.clock import ManualClock
from agent.store.signals import PriceSlot, Signals, Tariff, VehicleSchedule

CP1_1, CP1_2, CP2_1 = ("CP1", 1), ("CP1", 2), ("CP2", 1)
T0 = datetime(2026, 6, 17, 20, 0, tzinfo=UTC)  # a slot's start: the first slot is whole
ONE = datetime(2026, 6, 18, 1, 0, tzinfo=UTC)
LEAVES = datetime(2026, 6, 18, 6, 30, tzinfo=UTC)


def rig(**tariff):
    cfg = settings(tariff=tariff)
    held: dict = {}
    st = Station(cfg=cfg, clock=ManualClock(wall=T0), base_kw=30.0,
                 hooks={"guide": lambda ts: held["task"].guidance(ts)})  # fmt: skip
    signals = Signals(st.db)
    task = PlannerTask(cfg, st.clock, st.db, signals)
    held["task"] = task
    return st, task, signals


def cycle(st, task, **kw):
    d = st.cycle(**kw)
    task.notice(d)
    return d


def schedule(st, signals, key, vehicle, kwh):
    """The EV on `key` is `vehicle`, due to leave at 06:30 with `kwh` more."""
    st.db.execute("UPDATE sessions SET vehicle_id = ? WHERE id = ?", [vehicle, st.session_id(key)])
    signals.add_vehicle_schedule(VehicleSchedule(
        id=f"s-{vehicle}", vehicle_id=vehicle, departure=LEAVES, energy_target_kwh=kwh))  # fmt: skip


def words(d, sid, ts):
    return held_words(d.held[sid].as_dict(), {"charger_id": "CP1"}, {"ts": ts.isoformat()})


def test_the_plan_holds_an_ev_for_the_cheaper_night_and_says_so():
    st, task, signals = rig()
    signals.set_tariff(Tariff(id="t", demand_charge_eur_kw=0.0, slots=[
        PriceSlot(start=T0, end=ONE, import_eur_kwh=0.31, export_eur_kwh=0.05),
        PriceSlot(start=ONE, end=ONE + timedelta(hours=8), import_eur_kwh=0.12,
                  export_eur_kwh=0.05)]))  # fmt: skip
    st.plug(CP1_1)
    cycle(st, task, follow=True)
    sid = st.session_id(CP1_1)
    schedule(st, signals, CP1_1, "EV-7", 42.0)
    asyncio.run(task.replan("test"))
    for _ in range(3):
        d = cycle(st, task, follow=True)
    assert d.allocations[sid] == 0.0 and d.binding[sid] == "cap"  # paused by the plan
    h = d.held[sid]
    assert h.reason == "price" and h.until == ONE and h.departure == LEAVES
    assert h.price_now == pytest.approx(0.31) and h.price_then == pytest.approx(0.12)
    assert h.due_kwh == pytest.approx(42.0, abs=0.1)
    assert words(d, sid, st.clock.now()) == \
        "held by the plan: 0.31 EUR/kWh now, 0.12 from 01:00; 42 kWh due by 06:30"
    # Still held a minute before 01:00 (the same plan guides: no re-plan in between) ...
    d = cycle(st, task, advance=(ONE - st.clock.now()).total_seconds() - 60.0, follow=True)
    assert d.held[sid].reason == "price" and d.allocations[sid] == 0.0
    # ... and charging from 01:00, no longer held.
    d = cycle(st, task, advance=90.0, follow=True)
    assert d.allocations[sid] > 0.0 and sid not in d.held


def test_with_power_as_cheap_now_as_later_nothing_is_held():
    st, task, signals = rig()  # the [tariff] default: flat, no demand charge
    st.plug(CP1_1)
    cycle(st, task, follow=True)
    sid = st.session_id(CP1_1)
    schedule(st, signals, CP1_1, "EV-7", 42.0)
    asyncio.run(task.replan("test"))
    d = cycle(st, task, follow=True)
    assert d.planned and d.allocations[sid] > 0.0 and d.held == {}


def test_the_plan_slows_evs_to_keep_the_peak_down_and_says_so():
    st, task, signals = rig(demand_charge_eur_kw=15.0)
    st.plug(CP1_1)
    st.plug(CP2_1)
    cycle(st, task, follow=True)
    a, b = st.session_id(CP1_1), st.session_id(CP2_1)
    schedule(st, signals, CP1_1, "EV-1", 40.0)
    schedule(st, signals, CP2_1, "EV-2", 40.0)
    asyncio.run(task.replan("test"))
    for _ in range(3):
        d = cycle(st, task, follow=True)
    peak = task._current.plan.peak
    # 80 kWh over 10.5 h on a 30 kW base load: the plan spreads them, well below the
    # 100 kW connection and the 2 x 50 kW the chargers could give.
    assert 35.0 < peak < 60.0
    assert sum(d.allocations.values()) <= peak - 30.0 + 0.5
    for sid in (a, b):
        h = d.held[sid]
        assert h.reason == "peak" and h.peak_kw == pytest.approx(peak)
        assert h.demand_charge == 15.0 and h.planned_kw < 50.0 - 1.0
    slowed = max((a, b), key=lambda sid: d.allocations[sid])
    assert d.allocations[slowed] > 0.0
    assert words(d, slowed, st.clock.now()) == \
        f"slowed to keep the day's peak at {peak:.0f} kW (demand charge); 40 kWh due by 06:30"

    # An EV that takes less than the plan gives it: its own draw binds (the allocator caps
    # it near what it draws), not the plan, so it is not "held".
    key = CP1_1 if slowed == a else CP2_1
    st.draw[key] = 3.0
    for _ in range(12):  # 3 s: past cap_after_s
        d = cycle(st, task)
    assert d.binding[slowed] == "cap" and d.caps[slowed] < d.allocations[slowed] + 1e-6
    assert slowed not in d.held
    st.draw[key] = st.limits[key]

    # An EV the plan does not know yet (no re-plan): the planned EVs come first (priority)
    # and the plan's import cap leaves it less than its minimum; it is told why.
    st.plug(CP1_2)
    d = cycle(st, task, follow=True)
    d = cycle(st, task, follow=True)
    c = st.session_id(CP1_2)
    assert d.binding[c] == "minimum" and d.allocations[c] == 0.0
    h = d.held[c]
    assert h.reason == "peak" and h.departure is None and h.peak_kw == pytest.approx(peak)
    assert words(d, c, st.clock.now()) == \
        f"held to keep the day's peak at {peak:.0f} kW (demand charge)"


def test_a_v2g_discharge_is_held_for_v2g_until_the_departure_guard_lifts_it():
    """The plan's V2G reason rides on its slot's guidance (a stand-in plan here, as in
    test_v2g_cycles): shown while the session gives power back, gone once the departure
    guard makes it charge with priority."""
    from dataclasses import replace

    from test_v2g_cycles import V2G, discharging_station

    from allocator.guidance import Hold

    st, sid, _ = discharging_station()
    hold = Hold(reason="v2g", planned_kw=-20.0, max_kw=22.0, until=st.clock.now() + timedelta(hours=1))
    plain = st.controller.guide
    st.controller.guide = lambda ts: replace(plain(ts), held={sid: hold})
    d = st.cycle(follow=True)
    assert d.v2g.discharge_kw == {sid: 15.0} and d.held == {sid: hold}
    assert held_words(hold.as_dict(), {"charger_id": V2G[0]}, {"ts": st.clock.now().isoformat()}) \
        .startswith("giving back 20.0 kW to the station (V2G) until ")
    st.v2g.set_goal(sid, st.clock.now() + timedelta(hours=1.5), 50.0)
    st.steady(4)
    d = st.cycle(advance=900.0, follow=True)  # the departure guard trips (test_v2g_cycles)
    assert sid in d.v2g.guarded and sid not in d.held
