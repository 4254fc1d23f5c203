"""Why a plan holds a session (`allocator.held.explain`), on small days whose plans can be
checked by hand: each reason where it applies, none where the plan gives all it can."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from allocator.held import explain
from allocator.planner import ChargerSpec, PlanRequest, SessionSpec, plan

START = datetime(2026, 6, 17, 20, 0, tzinfo=UTC)
AC = [ChargerSpec("AC1", 22.0)]


def day(n: int, **kw) -> PlanRequest:
    base = dict(import_price=[0.30] * n, export_price=[0.05] * n, pv_power=[0.0] * n,
                base_load=[0.0] * n, grid_capacity=100.0, chargers=AC, slot_hours=1.0)  # fmt: skip
    base.update(kw)
    return PlanRequest(**base)


def holds(req: PlanRequest):
    return explain(req, plan(req), START)


def test_price_names_the_cheaper_hour_and_what_is_due():
    ev = SessionSpec("EV", "AC1", departure_h=4.0, energy_needed=19.0, max_power=11.0)
    out = holds(day(4, import_price=[0.30, 0.30, 0.10, 0.10], sessions=[ev]))
    h = out[0]["EV"]
    assert h.reason == "price" and h.planned_kw == 0.0 and h.max_kw == 11.0
    assert h.until == START + timedelta(hours=2) and h.departure == START + timedelta(hours=4)
    assert (h.price_now, h.price_then) == (pytest.approx(0.30), pytest.approx(0.10))
    assert h.due_kwh == pytest.approx(19.0)
    assert "EV" not in out[2]  # 11 kW, all it can draw
    # 9 kW in the last hour: the rest of its target, so nothing more is due.
    assert out[3]["EV"].reason == "schedule" and out[3]["EV"].planned_kw == pytest.approx(9.0)


def test_schedule_once_the_target_is_planned_in_full():
    ev = SessionSpec("EV", "AC1", departure_h=4.0, energy_needed=9.5, max_power=11.0)
    out = holds(day(4, sessions=[ev]))  # flat: charges at once (early is preferred)
    h = out[0]["EV"]  # 10 kW of its 11 for the hour: all its 9.5 kWh
    assert h.reason == "schedule" and h.planned_kw == pytest.approx(10.0)
    assert h.due_kwh == pytest.approx(9.5)
    h = out[1]["EV"]
    assert h.reason == "schedule" and h.due_kwh == pytest.approx(0.0, abs=1e-6)


def test_peak_when_the_demand_charge_spreads_the_charging():
    ev = SessionSpec("EV", "AC1", departure_h=4.0, energy_needed=38.0, max_power=22.0)
    out = holds(day(4, sessions=[ev], base_load=[10.0] * 4, demand_charge=10.0))
    h = out[0]["EV"]
    assert h.reason == "peak" and h.planned_kw == pytest.approx(10.0, abs=1e-6)
    assert h.peak_kw == pytest.approx(20.0, abs=1e-6) and h.demand_charge == 10.0
    assert h.until is None  # the plan never gives it more before it leaves


def test_grid_when_a_cap_leaves_no_more():
    ev = SessionSpec("EV", "AC1", departure_h=2.0, energy_needed=40.0, max_power=22.0)
    out = holds(day(2, sessions=[ev], import_caps=[12.0, None]))
    h = out[0]["EV"]
    assert h.reason == "grid" and h.limit_kw == pytest.approx(12.0)
    assert "EV" not in out[1]


def test_charger_when_two_sessions_share_it():
    a = SessionSpec("A", "AC1", departure_h=1.0, energy_needed=50.0, max_power=22.0)
    b = SessionSpec("B", "AC1", departure_h=1.0, energy_needed=50.0, max_power=22.0)
    out = holds(day(1, sessions=[a, b]))
    (h,) = out[0].values()  # the plan gives the charger's 22 kW to one of them
    assert h.reason == "charger" and h.limit_kw == 22.0 and h.planned_kw == 0.0


def test_v2g_until_it_stops_giving():
    ev = SessionSpec("EV", "AC1", departure_h=3.0, energy_needed=0.0, max_power=11.0,
                     v2g=True, v2g_max_power=11.0, v2g_energy=30.0)
    out = holds(day(3, sessions=[ev], import_price=[0.30, 0.10, 0.10],
                    export_price=[0.40, 0.0, 0.0], base_load=[10.0] * 3))
    h = out[0]["EV"]
    assert h.reason == "v2g" and h.planned_kw < -1.0
    assert h.until == START + timedelta(hours=1)


def test_an_ev_without_a_target_when_power_costs_more_than_it_is_worth():
    ev = SessionSpec("EV", "AC1", departure_h=3.0, energy_needed=0.0, max_power=11.0,
                     extra_energy=33.0, extra_value=0.20)
    out = holds(day(3, sessions=[ev], import_price=[0.30, 0.30, 0.10]))
    h = out[0]["EV"]
    assert h.reason == "price" and h.open_ended and h.worth == 0.20
    assert h.until == START + timedelta(hours=2) and h.price_then == pytest.approx(0.10)
    h = out[1]["EV"]
    assert h.reason == "price"
    out = holds(day(3, sessions=[ev], import_price=[0.30] * 3))  # never worth it
    assert out[0]["EV"].reason == "price" and out[0]["EV"].price_then is None


def test_nothing_is_held_when_the_plan_gives_all_it_can():
    ev = SessionSpec("EV", "AC1", departure_h=4.0, energy_needed=100.0, max_power=11.0)
    out = holds(day(4, import_price=[0.30, 0.30, 0.10, 0.10], sessions=[ev]))
    assert all("EV" not in slot for slot in out)


def test_fifty_sessions_over_a_day_are_explained_in_milliseconds():
    n = 96
    chargers = [ChargerSpec(f"C{i}", 22.0) for i in range(50)]
    sessions = [SessionSpec(f"S{i}", f"C{i}", departure_h=4.0 + (i % 20), energy_needed=30.0,
                            max_power=11.0, arrival_h=i % 8) for i in range(50)]  # fmt: skip
    prices = [0.30 if 17 * 4 <= t < 22 * 4 else 0.12 for t in range(n)]
    req = PlanRequest(import_price=prices, export_price=[0.05] * n, pv_power=[0.0] * n,
                      base_load=[50.0] * n, grid_capacity=400.0, chargers=chargers,
                      sessions=sessions, demand_charge=5.0)  # fmt: skip
    p = plan(req)
    t = time.perf_counter()
    out = explain(req, p, START)
    elapsed = time.perf_counter() - t
    print(f"explain: 50 sessions x {len(p.slot_hours)} sub-intervals in {elapsed * 1000:.1f} ms")
    assert sum(len(slot) for slot in out) > 50
    assert elapsed < 2.0  # generous on a loaded machine; measured ~10-30 ms
