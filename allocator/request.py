"""The allocation request: validation of the JSON contract and conversion to and from arrays.

The contract (DESIGN.md, "Allocation"), all powers in kW:

    {"stationId"?, "gridCapacity", "baseLoad"?, "pvPower"?,
     "battery"?: {"maxDischargePower", "maxChargePower", "soc", "minSoc"},
     "chargers": [{"id", "maxPower", "connectors"}],
     "sessions"?: [{"sessionId", "connectorId": {"chargerId", "idx"}, "vehicleMaxPower",
                    "powerCap"?, "minPower"?, "priority"?}]}

Sessions are listed in arrival order. `soc` and `minSoc` are percentages (0..100), as the
battery profiles report them. `priority` is any finite number, default 0; higher numbers are
more important (lower ones pause first). Unknown fields are rejected so that a misspelt
optional field (say "powercap") cannot be silently ignored.

Every mistake raises `AllocationError` whose message starts with the field path:
`sessions[2].connectorId.idx: connector 3 does not exist on charger CP1 (it has 2)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from allocator.arrays import StationArrays


class AllocationError(ValueError):
    """Invalid allocation request; `field` is the JSON path, `problem` what is wrong with it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class Battery:
    max_discharge_power: float
    max_charge_power: float
    soc: float
    min_soc: float


@dataclass(frozen=True)
class Charger:
    id: str
    max_power: float
    connectors: int


@dataclass(frozen=True)
class Session:
    session_id: str
    charger_id: str
    idx: int
    charger_index: int  # position of its charger in Request.chargers
    vehicle_max_power: float
    power_cap: float | None
    min_power: float
    priority: float


@dataclass(frozen=True)
class Request:
    station_id: str | None
    grid_capacity: float
    base_load: float
    pv_power: float
    battery: Battery | None
    chargers: tuple[Charger, ...]
    sessions: tuple[Session, ...]  # in arrival order


_TOP_FIELDS = {"stationId", "gridCapacity", "baseLoad", "pvPower", "battery", "chargers", "sessions"}
_BATTERY_FIELDS = {"maxDischargePower", "maxChargePower", "soc", "minSoc"}
_CHARGER_FIELDS = {"id", "maxPower", "connectors"}
_SESSION_FIELDS = {"sessionId", "connectorId", "vehicleMaxPower", "powerCap", "minPower", "priority"}
_CONNECTOR_FIELDS = {"chargerId", "idx"}


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", str: "a string", list: "an array", dict: "an object"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )


def _object(value: Any, path: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise AllocationError(path, f"expected an object, got {_type_name(value)}")
    for key in value:
        if key not in allowed:
            where = f"{path}.{key}" if path != "request" else str(key)
            raise AllocationError(where, "unknown field")
    return value


def _required(obj: dict[str, Any], key: str, path: str) -> Any:
    if key not in obj or obj[key] is None:
        raise AllocationError(path, "missing required field")
    return obj[key]


def _number(value: Any, path: str, *, minimum: float | None = None, positive: bool = False,
            maximum: float | None = None) -> float:
    # bool is an int subclass in Python; `true` is never a power.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AllocationError(path, f"expected a number, got {_type_name(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise AllocationError(path, f"must be finite, got {value}")
    if positive and number <= 0:
        raise AllocationError(path, f"must be > 0, got {value}")
    if minimum is not None and number < minimum:
        raise AllocationError(path, f"must be >= {minimum:g}, got {value}")
    if maximum is not None and number > maximum:
        raise AllocationError(path, f"must be <= {maximum:g}, got {value}")
    return number


def _integer(value: Any, path: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise AllocationError(path, f"expected an integer, got {_type_name(value)} {value!r}")
    if value < minimum:
        raise AllocationError(path, f"must be >= {minimum}, got {value}")
    return value


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise AllocationError(path, f"expected a string, got {_type_name(value)}")
    if not value:
        raise AllocationError(path, "must not be empty")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise AllocationError(path, f"expected an array, got {_type_name(value)}")
    return value


def _optional_number(obj: dict[str, Any], key: str, path: str, default: float, **limits: Any) -> float:
    if obj.get(key) is None:
        return default
    return _number(obj[key], path, **limits)


def _battery(value: Any, path: str) -> Battery:
    obj = _object(value, path, _BATTERY_FIELDS)

    def field(key: str, **limits: Any) -> float:
        return _number(_required(obj, key, f"{path}.{key}"), f"{path}.{key}", **limits)

    return Battery(
        max_discharge_power=field("maxDischargePower", minimum=0),
        max_charge_power=field("maxChargePower", minimum=0),
        soc=field("soc", minimum=0, maximum=100),
        min_soc=field("minSoc", minimum=0, maximum=100),
    )


def _chargers(value: Any) -> tuple[Charger, ...]:
    chargers: list[Charger] = []
    seen: set[str] = set()
    for i, item in enumerate(_list(value, "chargers")):
        path = f"chargers[{i}]"
        obj = _object(item, path, _CHARGER_FIELDS)
        charger_id = _string(_required(obj, "id", f"{path}.id"), f"{path}.id")
        if charger_id in seen:
            raise AllocationError(f"{path}.id", f"duplicate charger id {charger_id}")
        seen.add(charger_id)
        chargers.append(Charger(
            id=charger_id,
            max_power=_number(_required(obj, "maxPower", f"{path}.maxPower"), f"{path}.maxPower",
                              positive=True),
            connectors=_integer(_required(obj, "connectors", f"{path}.connectors"),
                                f"{path}.connectors", minimum=1),
        ))
    return tuple(chargers)


def _sessions(value: Any, chargers: tuple[Charger, ...]) -> tuple[Session, ...]:
    index_of = {c.id: k for k, c in enumerate(chargers)}
    sessions: list[Session] = []
    ids: set[str] = set()
    connector_owner: dict[tuple[str, int], str] = {}
    for i, item in enumerate(_list(value, "sessions")):
        path = f"sessions[{i}]"
        obj = _object(item, path, _SESSION_FIELDS)
        session_id = _string(_required(obj, "sessionId", f"{path}.sessionId"), f"{path}.sessionId")
        if session_id in ids:
            raise AllocationError(f"{path}.sessionId", f"duplicate session id {session_id}")
        ids.add(session_id)

        cpath = f"{path}.connectorId"
        conn = _object(_required(obj, "connectorId", cpath), cpath, _CONNECTOR_FIELDS)
        charger_id = _string(_required(conn, "chargerId", f"{cpath}.chargerId"), f"{cpath}.chargerId")
        if charger_id not in index_of:
            raise AllocationError(f"{cpath}.chargerId", f"unknown charger {charger_id}")
        charger = chargers[index_of[charger_id]]
        idx = _integer(_required(conn, "idx", f"{cpath}.idx"), f"{cpath}.idx", minimum=1)
        if idx > charger.connectors:
            raise AllocationError(
                f"{cpath}.idx",
                f"connector {idx} does not exist on charger {charger_id} (it has {charger.connectors})",
            )
        owner = connector_owner.setdefault((charger_id, idx), session_id)
        if owner != session_id:
            raise AllocationError(cpath, f"connector {charger_id}#{idx} is already used by session {owner}")

        sessions.append(Session(
            session_id=session_id,
            charger_id=charger_id,
            idx=idx,
            charger_index=index_of[charger_id],
            vehicle_max_power=_number(_required(obj, "vehicleMaxPower", f"{path}.vehicleMaxPower"),
                                      f"{path}.vehicleMaxPower", minimum=0),
            power_cap=(None if obj.get("powerCap") is None
                       else _number(obj["powerCap"], f"{path}.powerCap", minimum=0)),
            min_power=_optional_number(obj, "minPower", f"{path}.minPower", 0.0, minimum=0),
            priority=_optional_number(obj, "priority", f"{path}.priority", 0.0),
        ))
    return tuple(sessions)


def parse_request(obj: Any) -> Request:
    """Validate a request object (parsed JSON) and return it typed; raises AllocationError."""
    obj = _object(obj, "request", _TOP_FIELDS)
    station_id = obj.get("stationId")
    if station_id is not None:
        station_id = _string(station_id, "stationId")
    chargers = _chargers(_required(obj, "chargers", "chargers"))
    return Request(
        station_id=station_id,
        grid_capacity=_number(_required(obj, "gridCapacity", "gridCapacity"), "gridCapacity", minimum=0),
        base_load=_optional_number(obj, "baseLoad", "baseLoad", 0.0, minimum=0),
        pv_power=_optional_number(obj, "pvPower", "pvPower", 0.0, minimum=0),
        battery=None if obj.get("battery") is None else _battery(obj["battery"], "battery"),
        chargers=chargers,
        sessions=_sessions(obj.get("sessions") or [], chargers),
    )


def load_into(request: Request, arrays: StationArrays) -> None:
    """Fill pre-allocated kernel arrays with a validated request (sized for it)."""
    battery = request.battery
    arrays.set_station(
        grid_capacity=request.grid_capacity,
        base_load=request.base_load,
        pv_power=request.pv_power,
        battery_max_discharge=battery.max_discharge_power if battery else 0.0,
        battery_max_charge=battery.max_charge_power if battery else 0.0,
        battery_soc=battery.soc if battery else 0.0,
        battery_min_soc=battery.min_soc if battery else 0.0,
    )
    arrays.n_chargers = len(request.chargers)
    arrays.charger_max[: arrays.n_chargers] = [c.max_power for c in request.chargers]
    n = len(request.sessions)
    arrays.n_sessions = n
    if n:
        sessions = request.sessions
        arrays.session_charger[:n] = [s.charger_index for s in sessions]
        arrays.arrival[:n] = range(n)
        arrays.vehicle_max[:n] = [s.vehicle_max_power for s in sessions]
        arrays.power_cap[:n] = [math.inf if s.power_cap is None else s.power_cap for s in sessions]
        arrays.min_power[:n] = [s.min_power for s in sessions]
        arrays.priority[:n] = [s.priority for s in sessions]


def result_dict(request: Request, allocations: list[float], binding: list[str],
                battery_power: float, grid_power: float) -> dict[str, Any]:
    """The JSON result of the contract, keyed by session id (in arrival order)."""
    ids = [s.session_id for s in request.sessions]
    return {
        "allocations": dict(zip(ids, allocations, strict=True)),
        # Battery and grid mix raw inputs (base load, PV) with 0.01 kW steps: drop float noise.
        "batteryPower": round(battery_power, 6) + 0.0,
        "gridPower": round(grid_power, 6) + 0.0,
        "binding": dict(zip(ids, binding, strict=True)),
    }
