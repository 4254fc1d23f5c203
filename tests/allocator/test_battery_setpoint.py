"""Rule 5 with a plan's battery setpoint (allocator/battery.py): charge from the grid in the
room the EVs leave under gridCapacity, discharge up to the net load; no setpoint, no change.
Every expectation is computed by hand from the rule; kernel (fast and tree) and reference."""

from __future__ import annotations

from typing import Any

import pytest

from allocator import StationArrays, allocate, allocate_reference


def station(sessions: list[tuple[str, float]], *, grid: float = 100.0, base: float = 20.0,
            pv: float = 0.0, tree: bool = False, **battery: Any) -> dict[str, Any]:
    charger: dict[str, Any] = {"id": "CP1", "maxPower": 200.0, "connectors": 2}
    if tree:  # a charger current limit that never binds: the tree kernel runs
        charger["maxCurrent"] = 1000.0
    b = {"maxDischargePower": 50.0, "maxChargePower": 50.0, "soc": 50.0, "minSoc": 10.0, **battery}
    return {"gridCapacity": grid, "baseLoad": base, "pvPower": pv, "battery": b,
            "chargers": [charger],
            "sessions": [{"sessionId": sid, "connectorId": {"chargerId": "CP1", "idx": i + 1},
                          "vehicleMaxPower": kw} for i, (sid, kw) in enumerate(sessions)]}


@pytest.fixture(params=["kernel", "tree", "reference"])
def run(request: pytest.FixtureRequest) -> Any:
    def go(sessions: list[tuple[str, float]], **kw: Any) -> dict[str, Any]:
        if request.param == "reference":
            return allocate_reference(station(sessions, **kw))
        return allocate(station(sessions, tree=request.param == "tree", **kw))
    return go


def test_planned_charge_fits_after_the_evs(run: Any) -> None:
    # 100 kW grid, 20 kW base, one EV at its 30 kW: 50 kW of room, the plan asks 40.
    r = run([("a", 30.0)], setpoint=-40.0)
    assert r["allocations"] == {"a": 30.0}
    assert (r["batteryPower"], r["gridPower"]) == (-40.0, 90.0)


def test_planned_charge_gets_only_the_room_the_evs_leave(run: Any) -> None:
    # EVs first: 20 base + 2 x 35 = 90 kW, 10 kW of room for the planned 40.
    r = run([("a", 35.0), ("b", 35.0)], setpoint=-40.0)
    assert r["allocations"] == {"a": 35.0, "b": 35.0}
    assert (r["batteryPower"], r["gridPower"]) == (-10.0, 100.0)
    # EVs wanting more than the grid gives (no discharge allowed, as apply_plan sets it
    # while charging): they take it all, the battery gets nothing.
    r = run([("a", 100.0), ("b", 100.0)], setpoint=-40.0, maxDischargePower=0.0)
    assert r["allocations"] == {"a": 40.0, "b": 40.0}
    assert (r["batteryPower"], r["gridPower"]) == (0.0, 100.0)


def test_planned_charge_capped_by_the_battery(run: Any) -> None:
    r = run([("a", 10.0)], setpoint=-80.0, maxChargePower=25.0)
    assert (r["batteryPower"], r["gridPower"]) == (-25.0, 55.0)
    r = run([("a", 10.0)], setpoint=-80.0, soc=100.0)
    assert (r["batteryPower"], r["gridPower"]) == (0.0, 30.0)


def test_planned_charge_takes_pv_surplus_first(run: Any) -> None:
    # 60 kW PV, 20 base, 10 EV: 30 kW surplus; the plan asks 45: 15 more from the grid.
    r = run([("a", 10.0)], pv=60.0, setpoint=-45.0)
    assert (r["batteryPower"], r["gridPower"]) == (-45.0, 15.0)
    # asking less than the surplus: rule 5 still stores all of it (never exported)
    r = run([("a", 10.0)], pv=60.0, setpoint=-5.0)
    assert (r["batteryPower"], r["gridPower"]) == (-30.0, 0.0)


def test_planned_discharge_capped_at_the_net_load(run: Any) -> None:
    # net load 20 base + 15 EV = 35 kW: the planned 45 would export 10.
    r = run([("a", 15.0)], setpoint=45.0)
    assert (r["batteryPower"], r["gridPower"]) == (35.0, 0.0)
    r = run([("a", 15.0)], setpoint=20.0)
    assert (r["batteryPower"], r["gridPower"]) == (20.0, 15.0)
    r = run([("a", 15.0)], setpoint=80.0, maxDischargePower=30.0)
    assert (r["batteryPower"], r["gridPower"]) == (30.0, 5.0)
    r = run([("a", 15.0)], setpoint=45.0, soc=10.0)  # at minSoc: nothing
    assert (r["batteryPower"], r["gridPower"]) == (0.0, 35.0)


def test_planned_discharge_never_less_than_rule_5(run: Any) -> None:
    # EVs above the grid: rule 5 discharges 30 (20 + 2 x 55 - 100) though the plan says 10.
    r = run([("a", 55.0), ("b", 55.0)], setpoint=10.0)
    assert (r["batteryPower"], r["gridPower"]) == (30.0, 100.0)


def test_no_setpoint_is_todays_rule_5(run: Any) -> None:
    # The same stations without a setpoint: no grid charging, no discharge below the cap.
    r = run([("a", 30.0)])
    assert (r["batteryPower"], r["gridPower"]) == (0.0, 50.0)
    r = run([("a", 30.0)], setpoint=None)
    assert (r["batteryPower"], r["gridPower"]) == (0.0, 50.0)
    r = run([("a", 15.0)], setpoint=0.0)
    assert (r["batteryPower"], r["gridPower"]) == (0.0, 35.0)


def test_station_arrays_setpoint_lasts_one_set_station() -> None:
    arrays = StationArrays(1, 1)
    arrays.set_station(grid_capacity=100.0, base_load=20.0, battery_max_discharge=50.0,
                       battery_max_charge=50.0, battery_soc=50.0, battery_min_soc=10.0,
                       battery_setpoint=-40.0)
    arrays.n_chargers = 1
    arrays.charger_max[0] = 50.0
    arrays.n_sessions = 0
    arrays.solve()
    assert (arrays.battery_power, arrays.grid_power) == (-40.0, 60.0)
    arrays.set_station(grid_capacity=100.0, base_load=20.0, battery_max_discharge=50.0,
                       battery_max_charge=50.0, battery_soc=50.0, battery_min_soc=10.0)
    arrays.solve()  # the next cycle without a plan: rule 5 alone
    assert (arrays.battery_power, arrays.grid_power) == (0.0, 20.0)
    with pytest.raises(ValueError, match="battery_setpoint"):
        arrays.set_station(grid_capacity=100.0, battery_setpoint=float("nan"))
