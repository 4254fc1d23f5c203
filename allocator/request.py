"""The allocation request: validation of the JSON contract and conversion to and from arrays.

The contract (DESIGN.md, "Allocation"), all powers in kW:

    {"stationId"?, "gridCapacity", "baseLoad"?, "pvPower"?,
     "battery"?: {"maxDischargePower", "maxChargePower", "soc", "minSoc", "setpoint"?},
     "chargers": [{"id", "maxPower", "connectors"}],
     "sessions"?: [{"sessionId", "connectorId": {"chargerId", "idx"}, "vehicleMaxPower",
                    "powerCap"?, "minPower"?, "priority"?}]}

The electrical tree (all optional; a request without it is unchanged), currents in A:

    "voltage"?: 230 (phase-to-neutral V),
    "circuits"?: [{"id", "parent"?, "maxPower"?, "maxCurrent"?, "basePower"?,
                   "baseCurrent"?: [L1, L2, L3]}]          (listed in any order; a forest)
    chargers gain "circuit"?, "phases"?: 1 | 3, "phaseRotation"?: "L1L2L3", "maxCurrent"?,
                  "dc"?: bool (a DC charger draws balanced on three phases)
    sessions gain "phases"?: 1 | 2 | 3

Sessions are listed in arrival order. `soc` and `minSoc` are percentages (0..100), as the
battery profiles report them. The battery's optional `setpoint` is a plan's battery power in
kW (> 0 discharge, < 0 charge, from the grid if need be; rule 5 in reference.py). `priority` is any finite number, default 0; higher numbers are
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
    setpoint: float | None = None  # the plan's battery power, kW (> 0 discharge)


@dataclass(frozen=True)
class Charger:
    id: str
    max_power: float
    connectors: int
    circuit_index: int | None = None  # position of its circuit in Request.circuits
    phases: int = 3
    rotation: tuple[int, int, int] = (0, 1, 2)  # grid phase (0 = L1) of its L1, L2, L3
    max_current: float | None = None  # A per phase
    dc: bool = False


@dataclass(frozen=True)
class Circuit:
    id: str
    parent_index: int | None  # position of its parent in Request.circuits
    max_power: float | None  # kW
    max_current: float | None  # A per phase
    base_power: float  # kW, measured at this circuit's feeder (sub-circuits included)
    base_current: tuple[float, float, float]  # A per grid phase, measured the same way


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
    phases: int | None = None  # what the EV draws on (None: the charger's)


@dataclass(frozen=True)
class Request:
    station_id: str | None
    grid_capacity: float
    base_load: float
    pv_power: float
    battery: Battery | None
    chargers: tuple[Charger, ...]
    sessions: tuple[Session, ...]  # in arrival order
    voltage: float = 230.0
    circuits: tuple[Circuit, ...] = ()
    tree: bool = False  # any tree field was given: the result reports currents

    @property
    def limits_current(self) -> bool:
        """True when some limit is more than the old kW ones (the kernel's slower path)."""
        return bool(self.circuits) or any(c.max_current is not None for c in self.chargers)

    def conductors(self, session: Session) -> tuple[int, ...]:
        """Grid phases (0 = L1) the session draws on; a DC charger draws on all three."""
        charger = self.chargers[session.charger_index]
        if charger.dc:
            return (0, 1, 2)
        k = min(session.phases or charger.phases, charger.phases)
        return charger.rotation[:k]


_TOP_FIELDS = {"stationId", "gridCapacity", "baseLoad", "pvPower", "battery", "chargers", "sessions",
               "voltage", "circuits"}
_BATTERY_FIELDS = {"maxDischargePower", "maxChargePower", "soc", "minSoc", "setpoint"}
_CHARGER_TREE_FIELDS = {"circuit", "phases", "phaseRotation", "maxCurrent", "dc"}
_CHARGER_FIELDS = {"id", "maxPower", "connectors"} | _CHARGER_TREE_FIELDS
_SESSION_FIELDS = {"sessionId", "connectorId", "vehicleMaxPower", "powerCap", "minPower", "priority",
                   "phases"}
_CIRCUIT_FIELDS = {"id", "parent", "maxPower", "maxCurrent", "basePower", "baseCurrent"}
_ROTATIONS = {"".join(f"L{p + 1}" for p in perm): perm
              for perm in ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))}
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
        setpoint=None if obj.get("setpoint") is None else field("setpoint"),
    )


def _circuits(value: Any) -> tuple[Circuit, ...]:
    """Circuits in input order; parents must exist and form no cycle."""
    items = _list(value, "circuits")
    objs = [_object(item, f"circuits[{i}]", _CIRCUIT_FIELDS) for i, item in enumerate(items)]
    index_of: dict[str, int] = {}
    for i, obj in enumerate(objs):
        path = f"circuits[{i}].id"
        circuit_id = _string(_required(obj, "id", path), path)
        if circuit_id in index_of:
            raise AllocationError(path, f"duplicate circuit id {circuit_id}")
        index_of[circuit_id] = i
    circuits: list[Circuit] = []
    for i, obj in enumerate(objs):
        path = f"circuits[{i}]"
        parent = obj.get("parent")
        parent_index = None
        if parent is not None:
            parent = _string(parent, f"{path}.parent")
            if parent not in index_of:
                raise AllocationError(f"{path}.parent", f"unknown circuit {parent}")
            parent_index = index_of[parent]
        base_current = obj.get("baseCurrent")
        if base_current is None:
            currents = (0.0, 0.0, 0.0)
        else:
            phases = _list(base_current, f"{path}.baseCurrent")
            if len(phases) != 3:
                raise AllocationError(f"{path}.baseCurrent", f"expected [L1, L2, L3], got {len(phases)} values")
            a, b, c = (_number(x, f"{path}.baseCurrent[{p}]", minimum=0) for p, x in enumerate(phases))
            currents = (a, b, c)
        circuits.append(Circuit(
            id=str(obj["id"]), parent_index=parent_index,
            max_power=(None if obj.get("maxPower") is None
                       else _number(obj["maxPower"], f"{path}.maxPower", minimum=0)),
            max_current=(None if obj.get("maxCurrent") is None
                         else _number(obj["maxCurrent"], f"{path}.maxCurrent", minimum=0)),
            base_power=_optional_number(obj, "basePower", f"{path}.basePower", 0.0, minimum=0),
            base_current=currents,
        ))
    for i in range(len(circuits)):  # walk up from each circuit: a cycle never reaches a root
        seen: set[int] = set()
        at: int | None = i
        while at is not None:
            if at in seen:
                raise AllocationError(f"circuits[{i}].parent", f"cycle through circuit {circuits[at].id}")
            seen.add(at)
            at = circuits[at].parent_index
    return tuple(circuits)


def _charger_tree(obj: dict[str, Any], path: str, circuit_index: dict[str, int]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if obj.get("circuit") is not None:
        circuit = _string(obj["circuit"], f"{path}.circuit")
        if circuit not in circuit_index:
            raise AllocationError(f"{path}.circuit", f"unknown circuit {circuit}")
        fields["circuit_index"] = circuit_index[circuit]
    if obj.get("phases") is not None:
        phases = obj["phases"]
        if isinstance(phases, bool) or phases not in (1, 3):
            raise AllocationError(f"{path}.phases", f"must be 1 or 3, got {phases!r}")
        fields["phases"] = int(phases)
    if obj.get("phaseRotation") is not None:
        rotation = obj["phaseRotation"]
        if rotation not in _ROTATIONS:
            raise AllocationError(f"{path}.phaseRotation",
                                  f"must be a permutation of L1L2L3 such as L2L3L1, got {rotation!r}")
        fields["rotation"] = _ROTATIONS[rotation]
    if obj.get("maxCurrent") is not None:
        fields["max_current"] = _number(obj["maxCurrent"], f"{path}.maxCurrent", minimum=0)
    if obj.get("dc") is not None:
        if not isinstance(obj["dc"], bool):
            raise AllocationError(f"{path}.dc", f"expected a boolean, got {_type_name(obj['dc'])}")
        fields["dc"] = obj["dc"]
    return fields


def _chargers(value: Any, circuit_index: dict[str, int]) -> tuple[Charger, ...]:
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
            **_charger_tree(obj, path, circuit_index),
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
            phases=_session_phases(obj.get("phases"), f"{path}.phases"),
        ))
    return tuple(sessions)


def _session_phases(value: Any, path: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or value not in (1, 2, 3):
        raise AllocationError(path, f"must be 1, 2 or 3, got {value!r}")
    return int(value)


def parse_request(obj: Any) -> Request:
    """Validate a request object (parsed JSON) and return it typed; raises AllocationError."""
    obj = _object(obj, "request", _TOP_FIELDS)
    station_id = obj.get("stationId")
    if station_id is not None:
        station_id = _string(station_id, "stationId")
    circuits = () if obj.get("circuits") is None else _circuits(obj["circuits"])
    chargers = _chargers(_required(obj, "chargers", "chargers"), {c.id: k for k, c in enumerate(circuits)})
    sessions_in = obj.get("sessions") or []
    tree = (obj.get("circuits") is not None or obj.get("voltage") is not None
            or any(isinstance(c, dict) and _CHARGER_TREE_FIELDS & c.keys() for c in obj["chargers"])
            or any(isinstance(s, dict) and s.get("phases") is not None for s in sessions_in))
    return Request(
        station_id=station_id,
        grid_capacity=_number(_required(obj, "gridCapacity", "gridCapacity"), "gridCapacity", minimum=0),
        base_load=_optional_number(obj, "baseLoad", "baseLoad", 0.0, minimum=0),
        pv_power=_optional_number(obj, "pvPower", "pvPower", 0.0, minimum=0),
        battery=None if obj.get("battery") is None else _battery(obj["battery"], "battery"),
        chargers=chargers,
        sessions=_sessions(sessions_in, chargers),
        voltage=_optional_number(obj, "voltage", "voltage", 230.0, positive=True),
        circuits=circuits,
        tree=tree,
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
        battery_setpoint=battery.setpoint if battery else None,
    )
    arrays.n_chargers = len(request.chargers)
    arrays.charger_max[: arrays.n_chargers] = [c.max_power for c in request.chargers]
    arrays.tree = request.limits_current
    if arrays.tree:
        arrays.voltage = request.voltage
        arrays.n_circuits = len(request.circuits)
        for k, c in enumerate(request.circuits):
            arrays.set_circuit(k, parent=-1 if c.parent_index is None else c.parent_index,
                               max_power=math.inf if c.max_power is None else c.max_power,
                               max_current=math.inf if c.max_current is None else c.max_current,
                               base_power=c.base_power, base_current=c.base_current)
        for j, ch in enumerate(request.chargers):
            arrays.set_charger(j, ch.max_power,
                               circuit=-1 if ch.circuit_index is None else ch.circuit_index,
                               phases=ch.phases, rotation=ch.rotation,
                               max_current=math.inf if ch.max_current is None else ch.max_current,
                               dc=ch.dc)
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
        arrays.session_phases[:n] = [s.phases or 0 for s in sessions]


def session_currents(request: Request, allocations: list[float]) -> list[list[float]]:
    """A per grid phase [L1, L2, L3] of each session drawing its allocation (kW)."""
    out = []
    for s, kw in zip(request.sessions, allocations, strict=True):
        phases = request.conductors(s)
        amps = round(kw * 1000.0 / (len(phases) * request.voltage), 6) + 0.0
        out.append([amps if p in phases else 0.0 for p in range(3)])
    return out


def result_dict(request: Request, allocations: list[float], binding: list[str],
                battery_power: float, grid_power: float,
                binding_circuit: list[int] | None = None) -> dict[str, Any]:
    """The JSON result of the contract, keyed by session id (in arrival order).

    A request with tree fields also gets `currents` (A per grid phase) and `bindingCircuit`
    (the circuit id of each session whose binding is "circuit"); binding_circuit holds the
    circuit index of each session (-1 for none).
    """
    ids = [s.session_id for s in request.sessions]
    result: dict[str, Any] = {
        "allocations": dict(zip(ids, allocations, strict=True)),
        # Battery and grid mix raw inputs (base load, PV) with 0.01 kW steps: drop float noise.
        "batteryPower": round(battery_power, 6) + 0.0,
        "gridPower": round(grid_power, 6) + 0.0,
        "binding": dict(zip(ids, binding, strict=True)),
    }
    if request.tree:
        result["currents"] = dict(zip(ids, session_currents(request, allocations), strict=True))
        result["bindingCircuit"] = {
            sid: request.circuits[k].id
            for sid, name, k in zip(ids, binding, binding_circuit or [-1] * len(ids), strict=True)
            if name == "circuit" and k >= 0}
    return result
