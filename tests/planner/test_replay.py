"""Replay on a small generated day and on the reference day, with the real allocator."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agent.energy.replay import DayError, load_day, parse_day, run, simulate
from agent.energy.savings import SavingsLedger
from tests.shared_files import REFERENCE_DAY

REFERENCE = REFERENCE_DAY


def small_day(hours: int = 6, seed: int = 3) -> dict:
    """A short station day: two price levels, a PV bump, four EVs (one V2G), a battery."""
    rng = np.random.default_rng(seed)
    n = hours * 4
    series = []
    for i in range(n):
        h, m = divmod(i * 15, 60)
        series.append({
            "start": f"2026-06-17T{12 + h:02d}:{m:02d}:00Z",
            "importPrice": 0.35 if n // 3 <= i < 2 * n // 3 else 0.12,
            "exportPrice": 0.05,
            "pvPower": float(max(0.0, 30 * np.sin(np.pi * i / n))),
            "baseLoad": float(rng.uniform(5, 10)),
            "carbonIntensity": 250.0,
        })
    evs = [
        ("E1", "DC1", 1, "12:10", "13:00", 40.0, 100.0, False),
        ("E2", "DC1", 2, "12:20", "15:40", 50.0, 50.0, False),
        ("E3", "AC1", 1, "12:05", "17:50", 30.0, 11.0, True),
        ("E4", "DC1", 1, "14:00", "14:40", 30.0, 150.0, False),
    ]
    return {
        "format": "sems station day v1 (generated for tests)",
        "station": {
            "stationId": "TEST", "gridCapacity": 120.0,
            "chargers": [{"id": "DC1", "maxPower": 120.0, "connectors": 2},
                         {"id": "AC1", "maxPower": 22.0, "connectors": 1}],
            "battery": {"capacity": 60.0, "maxChargePower": 30.0, "maxDischargePower": 30.0,
                        "socStart": 0.5, "minSoc": 0.1, "maxSoc": 0.95,
                        "roundTripEfficiency": 0.9},
        },
        "tariff": {"demandCharge": 0.4},
        "v2g": {"maxPower": 11.0, "efficiency": 0.9, "v2gMinSoc": 0.2},
        "chargingEfficiency": 0.95,
        "series": series,
        "evs": [{"sessionId": sid, "connectorId": {"chargerId": c, "idx": i},
                 "arrival": f"2026-06-17T{a}:00Z", "departure": f"2026-06-17T{d}:00Z",
                 "batteryCapacity": 60.0, "socArrival": 0.5, "energyNeeded": e,
                 "vehicleMaxPower": p, "v2g": v2g}
                for sid, c, i, a, d, e, p, v2g in evs],
    }


KEYS = {"cost", "baselineCost", "savingsPct", "peakKw", "energyRequested",
        "energyDelivered", "unmetEnergy", "v2gEnergy", "batteryThroughput", "co2Kg",
        "optimumCost", "failedPlans", "batteryStartKwh", "batteryEndKwh"}


def test_small_day_planner_beats_uncontrolled_and_delivers_as_much():
    day = parse_day(small_day())
    report = run(day, "planner")
    assert set(report) == KEYS
    assert report["cost"] < report["baselineCost"]
    assert report["optimumCost"] <= report["cost"] + 1e-6
    base = simulate(day, "uncontrolled")
    assert report["energyDelivered"] >= base.energy_delivered - 0.5
    # All four targets are feasible here: the planner meets them.
    assert report["unmetEnergy"] == pytest.approx(0.0, abs=0.5)


def test_uncontrolled_policy_uses_no_battery_and_no_v2g():
    day = parse_day(small_day())
    r = simulate(day, "uncontrolled")
    assert r.ledger.battery_throughput_kwh == 0.0
    assert r.v2g_energy == 0.0
    assert r.battery_end_energy == pytest.approx(30.0)


def test_ledger_reconciles_with_the_meter_energies():
    """Every step's grid power = base - pv + EVs - battery; the ledger's interval sums must
    equal that energy balance summed over the day, and the costs must follow."""
    day = parse_day(small_day())
    r = simulate(day, "planner")
    led: SavingsLedger = r.ledger
    ev_kwh = sum(led.session_energy().values()) - sum(led.v2g_energy().values())
    batt = sum(iv.battery_discharge_kwh - iv.battery_charge_kwh for iv in led.intervals)
    station = float(np.sum(day.base_load - day.pv)) * day.slot_hours
    net = led.import_kwh - led.export_kwh
    assert net == pytest.approx(station + ev_kwh - batt, abs=1e-6)
    assert len(led.intervals) == len(day.import_price)
    energy_cost = sum(iv.import_kwh * day.import_price[iv.index]
                      - iv.export_kwh * day.export_price[iv.index] for iv in led.intervals)
    assert led.energy_cost == pytest.approx(energy_cost, abs=1e-6)
    assert led.peak_kw == pytest.approx(max(iv.import_kwh for iv in led.intervals) * 4)
    assert led.cost == pytest.approx(led.energy_cost + 0.4 * led.peak_kw)
    # Charging efficiency from the meters: stored / metered = 0.95 by construction.
    assert led.charging_efficiency() == pytest.approx(0.95, rel=1e-6)


def test_allocations_stay_within_limits_when_following_the_plan():
    """Spy on every allocator call: the result respects vehicle, charger and station."""
    from allocator import allocate

    day = parse_day(small_day())
    calls = []

    def checked(request):
        result = allocate(request)
        calls.append(1)
        alloc = result["allocations"]
        per_charger: dict[str, float] = {}
        for s in request["sessions"]:
            a = alloc[s["sessionId"]]
            assert -1e-6 <= a <= s["vehicleMaxPower"] + 1e-6
            if "powerCap" in s:
                assert a <= s["powerCap"] + 1e-6
            cid = s["connectorId"]["chargerId"]
            per_charger[cid] = per_charger.get(cid, 0.0) + a
        for c in request["chargers"]:
            assert per_charger.get(c["id"], 0.0) <= c["maxPower"] + 1e-6
        budget = request["gridCapacity"] - request.get("baseLoad", 0) + request.get("pvPower", 0)
        batt = request.get("battery")  # rule 1: the battery's discharge limit, above minSoc
        if batt is not None and batt["soc"] > batt["minSoc"]:
            budget += batt["maxDischargePower"]
        assert sum(alloc.values()) <= max(budget, 0.0) + 1e-6
        return result

    r = simulate(day, "planner", allocate=checked)
    assert len(calls) == 6 * 60
    # And the grid never exceeded its capacity in any interval.
    assert max(iv.import_kwh for iv in r.ledger.intervals) / 0.25 <= 120.0 + 1e-6


def test_bad_day_files_give_one_line_errors_naming_the_field(tmp_path):
    doc = small_day()
    doc["evs"][0]["connectorId"]["chargerId"] = "XX"
    with pytest.raises(DayError, match=r"^evs\[0\]\.connectorId: unknown charger"):
        parse_day(doc)
    doc = small_day()
    doc["series"][3]["importPrice"] = "cheap"
    with pytest.raises(DayError, match=r"^series\[3\]\.importPrice: must be a number"):
        parse_day(doc)
    doc = small_day()
    doc["evs"][3]["arrival"] = "2026-06-17T12:30:00Z"  # E4 on DC1/1 while E1 is there
    with pytest.raises(DayError, match=r"connector DC1/1 is still taken by E1"):
        parse_day(doc)
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(DayError, match=r"^scenario: not valid JSON"):
        load_day(bad)


def test_reference_day_meets_the_savings_target():
    day = load_day(REFERENCE)
    report = run(day, "planner")
    base = simulate(day, "uncontrolled")
    assert report["savingsPct"] >= 40.0
    assert report["energyDelivered"] >= base.energy_delivered
    assert report["optimumCost"] <= report["cost"]
    # Issue 7's gap target, reached by the default battery reserve (docs/planner.md): an
    # in-sample figure on the only reference day there is, kept here as a regression guard.
    assert report["cost"] <= 1.03 * report["optimumCost"]
    print(json.dumps(report))


def test_ledger_rows_land_in_the_store():
    from agent.energy.savings import store
    from agent.store.db import connect

    day = parse_day(small_day())
    r = simulate(day, "uncontrolled")
    db = connect(":memory:")
    assert store(db, r.ledger, "2026-06-17T12:00:00Z", "uncontrolled") == 24
    total = db.execute("SELECT sum(import_kwh) FROM ledger").fetchone()[0]
    assert total == pytest.approx(r.ledger.import_kwh)
