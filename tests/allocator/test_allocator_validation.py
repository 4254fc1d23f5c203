"""Every invalid request raises AllocationError naming the field path and the problem."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from allocator import AllocationError, allocate, allocate_reference


def base() -> dict[str, Any]:
    return {
        "stationId": "S1", "gridCapacity": 100, "baseLoad": 5, "pvPower": 10,
        "battery": {"maxDischargePower": 20, "maxChargePower": 20, "soc": 50, "minSoc": 10},
        "chargers": [{"id": "CP1", "maxPower": 50, "connectors": 2},
                     {"id": "CP2", "maxPower": 50, "connectors": 1}],
        "sessions": [
            {"sessionId": "s1", "connectorId": {"chargerId": "CP1", "idx": 1}, "vehicleMaxPower": 40},
            {"sessionId": "s2", "connectorId": {"chargerId": "CP1", "idx": 2}, "vehicleMaxPower": 40,
             "powerCap": 30, "minPower": 4.1, "priority": 1},
            {"sessionId": "s3", "connectorId": {"chargerId": "CP2", "idx": 1}, "vehicleMaxPower": 40},
        ],
    }


def setter(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(req: dict[str, Any]) -> None:
        target = req
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return apply


def deleter(path: tuple[Any, ...]) -> Callable[[dict[str, Any]], None]:
    def apply(req: dict[str, Any]) -> None:
        target = req
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return apply


S = "sessions"
CASES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("unknown charger", setter((S, 2, "connectorId", "chargerId"), "CP9"),
     "sessions[2].connectorId.chargerId: unknown charger CP9"),
    ("connector out of range", setter((S, 2, "connectorId", "idx"), 3),
     "sessions[2].connectorId.idx: connector 3 does not exist on charger CP2 (it has 1)"),
    ("connector zero", setter((S, 0, "connectorId", "idx"), 0),
     "sessions[0].connectorId.idx: must be >= 1, got 0"),
    ("connector not an integer", setter((S, 0, "connectorId", "idx"), 1.5),
     "sessions[0].connectorId.idx: expected an integer"),
    ("duplicate connector", setter((S, 1, "connectorId", "idx"), 1),
     "sessions[1].connectorId: connector CP1#1 is already used by session s1"),
    ("duplicate session id", setter((S, 2, "sessionId"), "s1"),
     "sessions[2].sessionId: duplicate session id s1"),
    ("duplicate charger id", setter(("chargers", 1, "id"), "CP1"),
     "chargers[1].id: duplicate charger id CP1"),
    ("zero charger max", setter(("chargers", 0, "maxPower"), 0),
     "chargers[0].maxPower: must be > 0, got 0"),
    ("negative charger max", setter(("chargers", 0, "maxPower"), -5),
     "chargers[0].maxPower: must be > 0"),
    ("zero connectors", setter(("chargers", 0, "connectors"), 0),
     "chargers[0].connectors: must be >= 1"),
    ("negative vehicle max", setter((S, 0, "vehicleMaxPower"), -1),
     "sessions[0].vehicleMaxPower: must be >= 0, got -1"),
    ("negative cap", setter((S, 1, "powerCap"), -1), "sessions[1].powerCap: must be >= 0"),
    ("negative minimum", setter((S, 1, "minPower"), -4), "sessions[1].minPower: must be >= 0"),
    ("priority not a number", setter((S, 1, "priority"), "high"),
     "sessions[1].priority: expected a number, got a string"),
    ("negative grid", setter(("gridCapacity",), -1), "gridCapacity: must be >= 0, got -1"),
    ("infinite grid", setter(("gridCapacity",), float("inf")), "gridCapacity: must be finite"),
    ("nan base load", setter(("baseLoad",), float("nan")), "baseLoad: must be finite"),
    ("negative pv", setter(("pvPower",), -3), "pvPower: must be >= 0"),
    ("soc above 100", setter(("battery", "soc"), 101), "battery.soc: must be <= 100, got 101"),
    ("min soc negative", setter(("battery", "minSoc"), -1), "battery.minSoc: must be >= 0"),
    ("negative discharge", setter(("battery", "maxDischargePower"), -1),
     "battery.maxDischargePower: must be >= 0"),
    ("missing soc", deleter(("battery", "soc")), "battery.soc: missing required field"),
    ("setpoint not a number", setter(("battery", "setpoint"), "-20"),
     "battery.setpoint: expected a number, got a string"),
    ("setpoint infinite", setter(("battery", "setpoint"), float("inf")), "battery.setpoint: must be finite"),
    ("missing grid", deleter(("gridCapacity",)), "gridCapacity: missing required field"),
    ("missing chargers", deleter(("chargers",)), "chargers: missing required field"),
    ("missing vehicle max", deleter((S, 0, "vehicleMaxPower")),
     "sessions[0].vehicleMaxPower: missing required field"),
    ("missing connector", deleter((S, 0, "connectorId")),
     "sessions[0].connectorId: missing required field"),
    ("missing session id", deleter((S, 0, "sessionId")),
     "sessions[0].sessionId: missing required field"),
    ("missing charger id", deleter(("chargers", 0, "id")), "chargers[0].id: missing required field"),
    ("grid as string", setter(("gridCapacity",), "330"),
     "gridCapacity: expected a number, got a string"),
    ("boolean power", setter((S, 0, "vehicleMaxPower"), True),
     "sessions[0].vehicleMaxPower: expected a number, got a boolean"),
    ("session id as number", setter((S, 0, "sessionId"), 7),
     "sessions[0].sessionId: expected a string, got a number"),
    ("empty charger id", setter(("chargers", 0, "id"), ""), "chargers[0].id: must not be empty"),
    ("chargers not a list", setter(("chargers",), {"id": "CP1"}),
     "chargers: expected an array, got an object"),
    ("sessions not a list", setter((S,), "s1"), "sessions: expected an array, got a string"),
    ("session not an object", setter((S, 0), 5), "sessions[0]: expected an object, got a number"),
    ("battery not an object", setter(("battery",), 5), "battery: expected an object, got a number"),
    ("misspelt optional field", setter((S, 0, "powercap"), 5), "sessions[0].powercap: unknown field"),
    ("unknown top-level field", setter(("gridcapacity",), 5), "gridcapacity: unknown field"),
    ("station id not a string", setter(("stationId",), 12), "stationId: expected a string"),
    # the electrical tree
    ("unknown parent", setter(("circuits",), [{"id": "sub", "parent": "main"}]),
     "circuits[0].parent: unknown circuit main"),
    ("circuit cycle", setter(("circuits",), [{"id": "a", "parent": "b"}, {"id": "b", "parent": "a"}]),
     "circuits[0].parent: cycle through circuit a"),
    ("duplicate circuit", setter(("circuits",), [{"id": "a"}, {"id": "a"}]),
     "circuits[1].id: duplicate circuit id a"),
    ("charger under unknown circuit", setter(("chargers", 1, "circuit"), "nowhere"),
     "chargers[1].circuit: unknown circuit nowhere"),
    ("charger phases", setter(("chargers", 0, "phases"), 2), "chargers[0].phases: must be 1 or 3, got 2"),
    ("bad rotation", setter(("chargers", 0, "phaseRotation"), "L1L1L2"),
     "chargers[0].phaseRotation: must be a permutation of L1L2L3"),
    ("negative charger current", setter(("chargers", 0, "maxCurrent"), -1),
     "chargers[0].maxCurrent: must be >= 0, got -1"),
    ("session phases", setter((S, 0, "phases"), 4), "sessions[0].phases: must be 1, 2 or 3, got 4"),
    ("base current length", setter(("circuits",), [{"id": "a", "baseCurrent": [1, 2]}]),
     "circuits[0].baseCurrent: expected [L1, L2, L3], got 2 values"),
    ("base current value", setter(("circuits",), [{"id": "a", "baseCurrent": [1, "x", 2]}]),
     "circuits[0].baseCurrent[1]: expected a number, got a string"),
    ("voltage", setter(("voltage",), 0), "voltage: must be > 0, got 0"),
    ("dc flag", setter(("chargers", 0, "dc"), "yes"), "chargers[0].dc: expected a boolean, got a string"),
    ("misspelt circuit field", setter(("circuits",), [{"id": "a", "maxcurrent": 16}]),
     "circuits[0].maxcurrent: unknown field"),
]


@pytest.mark.parametrize("engine", [allocate, allocate_reference], ids=["kernel", "reference"])
@pytest.mark.parametrize(("mutate", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_request_names_field_and_problem(engine: Any, mutate: Callable[[dict[str, Any]], None],
                                                 message: str) -> None:
    request = base()
    engine(copy.deepcopy(request))  # the unmutated request is valid
    mutate(request)
    with pytest.raises(AllocationError) as info:
        engine(request)
    assert str(info.value).startswith(message)
    assert str(info.value).split(":")[0] == info.value.field
    assert isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)


def test_request_must_be_an_object() -> None:
    with pytest.raises(AllocationError, match="^request: expected an object, got an array$"):
        allocate([])  # type: ignore[arg-type]


def test_optional_fields_may_be_null_or_absent() -> None:
    request = base()
    request["battery"] = None
    request["sessions"][1]["powerCap"] = None
    request["sessions"][1]["minPower"] = None
    assert allocate(request)["allocations"] == {"s1": 25.0, "s2": 25.0, "s3": 40.0}
    del request["sessions"]
    assert allocate(request)["allocations"] == {}
