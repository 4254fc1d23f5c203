"""Hand-checked allocations: the Electra example, battery, PV, minimums, caps, edge stations."""

from __future__ import annotations

import math
from typing import Any

import pytest

from allocator import StationArrays, allocate, allocate_reference


def station(grid: float, chargers: list[tuple[str, float, int]], sessions: list[dict[str, Any]],
            **extra: Any) -> dict[str, Any]:
    return {"stationId": "T", "gridCapacity": grid,
            "chargers": [{"id": c, "maxPower": p, "connectors": k} for c, p, k in chargers],
            "sessions": sessions, **extra}


def ev(sid: str, charger: str, idx: int, vmax: float, **extra: Any) -> dict[str, Any]:
    return {"sessionId": sid, "connectorId": {"chargerId": charger, "idx": idx},
            "vehicleMaxPower": vmax, **extra}


@pytest.fixture(params=[allocate, allocate_reference], ids=["kernel", "reference"])
def run(request: pytest.FixtureRequest) -> Any:
    return request.param


ELECTRA = station(330, [("CP1", 200, 2), ("CP2", 200, 2)],
                  [ev("a", "CP1", 1, 80), ev("b", "CP1", 2, 150), ev("c", "CP2", 1, 150)])


def test_electra_readme_example(run: Any) -> None:
    result = run(ELECTRA)
    assert result == {"allocations": {"a": 80.0, "b": 120.0, "c": 130.0}, "batteryPower": 0.0,
                      "gridPower": 330.0,
                      "binding": {"a": "vehicle", "b": "charger", "c": "station"}}


def test_battery_discharges_only_what_the_evs_need_beyond_the_grid(run: Any) -> None:
    battery = {"maxDischargePower": 50, "maxChargePower": 30, "soc": 60, "minSoc": 10}
    sessions = [ev("a", "CP1", 1, 100), ev("b", "CP1", 2, 100)]
    result = run(station(100, [("CP1", 200, 2)], sessions, battery=battery))
    assert result["allocations"] == {"a": 75.0, "b": 75.0}
    assert (result["batteryPower"], result["gridPower"]) == (50.0, 100.0)
    small = [ev("a", "CP1", 1, 30), ev("b", "CP1", 2, 30)]
    result = run(station(100, [("CP1", 200, 2)], small, battery=battery))
    assert (result["batteryPower"], result["gridPower"]) == (0.0, 60.0)


def test_battery_at_or_below_min_soc_gives_nothing(run: Any) -> None:
    battery = {"maxDischargePower": 50, "maxChargePower": 30, "soc": 10, "minSoc": 10}
    sessions = [ev("a", "CP1", 1, 100), ev("b", "CP1", 2, 100)]
    result = run(station(100, [("CP1", 200, 2)], sessions, battery=battery))
    assert result["allocations"] == {"a": 50.0, "b": 50.0}
    assert result["batteryPower"] == 0.0
    assert result["binding"] == {"a": "station", "b": "station"}


def test_pv_surplus_charges_the_battery_up_to_its_limit(run: Any) -> None:
    battery = {"maxDischargePower": 50, "maxChargePower": 40, "soc": 50, "minSoc": 10}
    request = station(50, [("CP1", 50, 1)], [ev("a", "CP1", 1, 30)],
                      baseLoad=10, pvPower=100, battery=battery)
    result = run(request)
    # surplus 100 - 10 - 30 = 60: 40 into the battery, 20 exported
    assert result["allocations"] == {"a": 30.0}
    assert (result["batteryPower"], result["gridPower"]) == (-40.0, -20.0)
    full = run(dict(request, battery=dict(battery, soc=100)))
    assert (full["batteryPower"], full["gridPower"]) == (0.0, -60.0)


def test_budget_below_zero_gives_evs_nothing_and_battery_covers_what_it_can(run: Any) -> None:
    battery = {"maxDischargePower": 20, "maxChargePower": 20, "soc": 80, "minSoc": 10}
    request = station(50, [("CP1", 100, 2)], [ev("a", "CP1", 1, 50), ev("b", "CP1", 2, 0)],
                      baseLoad=80, battery=battery)
    result = run(request)
    assert result["allocations"] == {"a": 0.0, "b": 0.0}
    assert result["binding"] == {"a": "station", "b": "vehicle"}
    assert (result["batteryPower"], result["gridPower"]) == (20.0, 60.0)


def test_minimums_pause_lowest_priority_then_latest_arrival(run: Any) -> None:
    chargers = [("A", 22, 1), ("B", 22, 1), ("C", 22, 1), ("D", 22, 1)]
    sessions = [ev("s0", "A", 1, 11, minPower=4, priority=0),
                ev("s1", "B", 1, 11, minPower=4, priority=1),
                ev("s2", "C", 1, 11, minPower=4, priority=0),
                ev("s3", "D", 1, 11, minPower=4, priority=5)]
    # 4 x 4 = 16 > 10: pause s2 (priority 0, latest), then s0 (priority 0): s1 and s3 get 5
    result = run(station(10, chargers, sessions))
    assert result["allocations"] == {"s0": 0.0, "s1": 5.0, "s2": 0.0, "s3": 5.0}
    assert result["binding"] == {"s0": "minimum", "s1": "station", "s2": "minimum", "s3": "station"}
    # 12 kW: three minimums fit, only s2 pauses; the rest share 4 / 4 / 4
    result = run(station(12, chargers, sessions))
    assert result["allocations"] == {"s0": 4.0, "s1": 4.0, "s2": 0.0, "s3": 4.0}


def test_minimum_is_a_floor_and_the_rest_is_shared_fairly(run: Any) -> None:
    sessions = [ev("a", "A", 1, 7.4, minPower=1.4), ev("b", "B", 1, 11, minPower=4.1)]
    result = run(station(6, [("A", 22, 1), ("B", 22, 1)], sessions))
    # b is held at its 4.1 kW minimum; a takes the 1.9 kW left (above its own 1.4)
    assert result["allocations"] == {"a": 1.9, "b": 4.1}
    assert result["binding"] == {"a": "station", "b": "station"}


def test_charger_that_cannot_hold_all_minimums_pauses_its_latest_session(run: Any) -> None:
    sessions = [ev("a", "A", 1, 11, minPower=4.1), ev("b", "A", 2, 11, minPower=4.1),
                ev("c", "A", 3, 11, minPower=4.1), ev("d", "B", 1, 11, minPower=4.1)]
    result = run(station(1000, [("A", 10, 3), ("B", 22, 1)], sessions))
    assert result["allocations"] == {"a": 5.0, "b": 5.0, "c": 0.0, "d": 11.0}
    assert result["binding"] == {"a": "charger", "b": "charger", "c": "minimum", "d": "vehicle"}


def test_session_whose_ceiling_is_below_its_minimum_pauses(run: Any) -> None:
    sessions = [ev("a", "A", 1, 3.0, minPower=4.1), ev("b", "A", 2, 50, powerCap=2, minPower=4.1)]
    result = run(station(1000, [("A", 100, 2)], sessions))
    assert result["allocations"] == {"a": 0.0, "b": 0.0}
    assert result["binding"] == {"a": "minimum", "b": "minimum"}


def test_power_cap_is_an_extra_ceiling(run: Any) -> None:
    sessions = [ev("a", "A", 1, 150, powerCap=50), ev("b", "A", 2, 40, powerCap=60),
                ev("c", "B", 1, 40, powerCap=40)]
    result = run(station(1000, [("A", 200, 2), ("B", 200, 1)], sessions))
    assert result["allocations"] == {"a": 50.0, "b": 40.0, "c": 40.0}
    assert result["binding"] == {"a": "cap", "b": "vehicle", "c": "vehicle"}


def test_shares_round_down_to_the_step(run: Any) -> None:
    sessions = [ev(f"s{i}", "A", i + 1, 50) for i in range(3)]
    result = run(station(100, [("A", 300, 3)], sessions))
    assert list(result["allocations"].values()) == [33.33, 33.33, 33.33]
    assert sum(result["allocations"].values()) <= 100


def test_charger_limit_below_the_vehicle(run: Any) -> None:
    result = run(station(1000, [("A", 22, 1)], [ev("a", "A", 1, 150)]))
    assert result["allocations"] == {"a": 22.0}
    assert result["binding"] == {"a": "charger"}


def test_empty_station_and_station_without_sessions(run: Any) -> None:
    assert run({"gridCapacity": 0, "chargers": []}) == {
        "allocations": {}, "batteryPower": 0.0, "gridPower": 0.0, "binding": {}}
    battery = {"maxDischargePower": 50, "maxChargePower": 25, "soc": 50, "minSoc": 10}
    idle = run(station(100, [("A", 50, 2)], [], baseLoad=5, pvPower=20, battery=battery))
    assert (idle["allocations"], idle["batteryPower"], idle["gridPower"]) == ({}, -15.0, 0.0)


def test_station_arrays_reused_across_cycles_match_allocate() -> None:
    arrays = StationArrays(max_chargers=4, max_sessions=8)
    arrays.n_chargers = 2
    arrays.set_charger(0, 200)
    arrays.set_charger(1, 200)
    arrays.set_station(grid_capacity=330)
    arrays.n_sessions = 3
    for row, (charger, vmax) in enumerate([(0, 80), (0, 150), (1, 150)]):
        arrays.set_session(row, charger=charger, vehicle_max=vmax)
    arrays.solve()
    assert arrays.allocation[:3].tolist() == [80.0, 120.0, 130.0]
    assert arrays.binding_names() == ["vehicle", "charger", "station"]
    # next cycle: the first EV leaves; rows are rewritten in place
    arrays.n_sessions = 2
    arrays.set_session(0, charger=0, vehicle_max=150)
    arrays.set_session(1, charger=1, vehicle_max=150)
    arrays.solve()
    assert arrays.allocation[:2].tolist() == [150.0, 150.0]
    assert (arrays.battery_power, arrays.grid_power) == (0.0, 300.0)


def test_station_arrays_arrival_ranks_order_pauses() -> None:
    arrays = StationArrays(max_chargers=2, max_sessions=2)
    arrays.n_chargers, arrays.n_sessions = 2, 2
    arrays.set_charger(0, 22)
    arrays.set_charger(1, 22)
    arrays.set_station(grid_capacity=6)
    # row 0 arrived after row 1: it pauses first
    arrays.set_session(0, charger=0, vehicle_max=11, min_power=4, arrival=7)
    arrays.set_session(1, charger=1, vehicle_max=11, min_power=4, arrival=3)
    arrays.solve()
    assert arrays.allocation[:2].tolist() == [0.0, 6.0]
    assert arrays.binding_names() == ["minimum", "station"]


def test_station_arrays_reject_bad_input() -> None:
    arrays = StationArrays(max_chargers=1, max_sessions=2)
    with pytest.raises(ValueError, match="grid_capacity: must be finite"):
        arrays.set_station(grid_capacity=math.nan)
    with pytest.raises(ValueError, match="vehicle_max: must be >= 0"):
        arrays.set_session(0, charger=0, vehicle_max=-1)
    with pytest.raises(ValueError, match="out of range"):
        arrays.set_session(0, charger=3, vehicle_max=1)
    arrays.n_chargers, arrays.n_sessions = 1, 1
    arrays.set_charger(0, 10)
    arrays.session_charger[0] = 5  # written directly, bypassing set_session
    with pytest.raises(ValueError, match="session_charger"):
        arrays.solve()
    arrays.n_sessions = 3
    with pytest.raises(ValueError, match="exceed"):
        arrays.solve()
