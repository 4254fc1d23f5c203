"""Station descriptions the simulator accepts, validated into a small typed form.

Accepted: an Electra-like station object (stationId, gridCapacity, chargers, battery?,
pvPeak?), a scenario day file (its "station" key, plus "series" and "evs"), or a TOML file
with the station at top level or under [station]. snake_case spellings are accepted too.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any


class StationError(ValueError):
    """Bad station description; the message is one line naming the field."""


@dataclass(frozen=True)
class ChargerSpec:
    id: str
    max_kw: float
    connectors: int = 1
    kind: str = "ac"  # "ac" or "dc": DC chargers react faster (see physics.ChargerModel)
    v2g: bool = False  # bidirectional: takes negative limits (V2G discharge)
    circuit: str | None = None  # the circuit (sub-board) it is wired to; None: the main board
    phases: int = 3  # conductors: 1 or 3
    rotation: tuple[int, int, int] = (0, 1, 2)  # grid phase (0..2) of its L1, L2, L3


@dataclass(frozen=True)
class CircuitSpec:
    """A sub-board with its breaker: the chargers wired to it and its own non-EV load."""

    id: str
    max_current_a: float  # breaker rating, A per phase
    parent: str | None = None
    base_load_kw: float = 0.0  # wired directly on it (40/30/30 % over L1/L2/L3)
    meter: bool = False  # a Modbus meter on its feeder (sub-circuits included)


@dataclass(frozen=True)
class BatterySpec:
    capacity_kwh: float
    max_charge_kw: float
    max_discharge_kw: float
    soc: float = 0.5
    min_soc: float = 0.1
    max_soc: float = 0.95
    round_trip_efficiency: float = 0.9


@dataclass(frozen=True)
class EvArrival:
    """One scripted session of a scenario file (times in seconds from the scenario start)."""

    session_id: str
    charger_id: str
    idx: int
    arrival_s: float
    departure_s: float
    capacity_kwh: float
    soc: float
    energy_needed_kwh: float
    max_kw: float
    v2g: bool = False
    v2g_min_soc: float = 0.2  # the scenario's "v2g": {"v2gMinSoc"}
    v2g_max_kw: float = 22.0  # the scenario's "v2g": {"maxPower"}
    phases: int = 3  # what the EV draws on: the charger's first k conductors


@dataclass(frozen=True)
class StationSpec:
    station_id: str
    grid_capacity_kw: float
    chargers: tuple[ChargerSpec, ...]
    battery: BatterySpec | None = None
    pv_peak_kw: float = 0.0
    start: datetime | None = None  # scenario start (UTC); None: the wall clock at start
    slot_s: float = 900.0
    pv_series_kw: tuple[float, ...] = ()
    base_series_kw: tuple[float, ...] = ()
    evs: tuple[EvArrival, ...] = field(default_factory=tuple)
    circuits: tuple[CircuitSpec, ...] = ()


def _get(d: dict, *names: str, default: Any = None) -> Any:
    for n in names:
        if n in d:
            return d[n]
    return default


def _number(value: Any, where: str, *, positive: bool = False, minimum: float | None = None,
            maximum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise StationError(f"{where}: must be a number")
    if positive and value <= 0:
        raise StationError(f"{where}: must be > 0")
    if minimum is not None and value < minimum:
        raise StationError(f"{where}: must be >= {minimum}")
    if maximum is not None and value > maximum:
        raise StationError(f"{where}: must be <= {maximum}")
    return float(value)


def _fraction(value: Any, where: str) -> float:
    """SoC as 0..1; the agent's config writes percent (values above 1 are taken as %)."""
    x = _number(value, where, minimum=0, maximum=100)
    return x / 100.0 if x > 1 else x


def _time(value: Any, where: str) -> datetime:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise StationError(f"{where}: not an ISO-8601 time") from None


def load_station_file(path: str | Path) -> StationSpec:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise StationError(f"{p}: cannot read ({exc.strerror})") from None
    try:
        data = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise StationError(f"{p}: not valid {'TOML' if p.suffix == '.toml' else 'JSON'} "
                           f"({exc})") from None
    if not isinstance(data, dict):
        raise StationError(f"{p}: must hold an object")
    return parse_station(data)


def parse_station(data: dict) -> StationSpec:
    """A station object, or a scenario day / agent config holding one under "station"."""
    if not isinstance(data, dict):
        raise StationError("station: must be an object")
    scenario = data if isinstance(data.get("station"), dict) else None
    st = data["station"] if scenario else data
    pre = "station." if scenario else ""

    station_id = _get(st, "stationId", "station_id", "id", default="SIM")
    capacity = _number(_get(st, "gridCapacity", "grid_capacity", "grid_capacity_kw"),
                       f"{pre}gridCapacity",
                       positive=True)
    chargers: list[ChargerSpec] = []
    for where, c, cid in _entries(_get(st, "chargers", default=[]), f"{pre}chargers", "charger"):
        connectors = _get(c, "connectors", default=1)
        if isinstance(connectors, bool) or not isinstance(connectors, int) or not 1 <= connectors <= 8:
            raise StationError(f"{where}.connectors: must be an integer 1..8")
        max_kw = _number(_get(c, "maxPower", "max_power", "max_power_kw"), f"{where}.maxPower",
                         positive=True)
        # Without a "kind", anything above 43 kW (the largest AC charger) is taken as DC.
        kind = str(c.get("kind", "dc" if max_kw > 43 else "ac"))
        if kind not in ("ac", "dc"):
            raise StationError(f"{where}.kind: must be 'ac' or 'dc'")
        v2g = _get(c, "v2g", "bidirectional", default=False)
        if not isinstance(v2g, bool):
            raise StationError(f"{where}.v2g: must be true or false")
        circuit = c.get("circuit")
        if circuit is not None and not isinstance(circuit, str):
            raise StationError(f"{where}.circuit: must be a circuit id")
        phases = _get(c, "phases", default=3)
        if phases not in (1, 3) or isinstance(phases, bool):
            raise StationError(f"{where}.phases: must be 1 or 3")
        chargers.append(ChargerSpec(cid, max_kw, connectors, kind, v2g, circuit, phases,
                                    _rotation(_get(c, "phaseRotation", "phase_rotation",
                                                   default="L1L2L3"), f"{where}.phaseRotation")))
    circuits = _circuits(_get(st, "circuits", default=[]), pre, chargers)

    battery = None
    b = st.get("battery")
    if b is not None:
        where = f"{pre}battery"
        if not isinstance(b, dict):
            raise StationError(f"{where}: must be an object")
        max_charge = _number(_get(b, "maxChargePower", "max_charge_power", "max_charge_kw"),
                             f"{where}.maxChargePower", minimum=0)
        max_discharge = _number(
            _get(b, "maxDischargePower", "max_discharge_power", "max_discharge_kw"),
            f"{where}.maxDischargePower", minimum=0)
        # The agent's config has no capacity: assume two hours at rated power.
        default_capacity = 2.0 * max(max_charge, max_discharge, 1.0)
        battery = BatterySpec(
            capacity_kwh=_number(_get(b, "capacity", "capacity_kwh", default=default_capacity),
                                 f"{where}.capacity", positive=True),
            max_charge_kw=max_charge,
            max_discharge_kw=max_discharge,
            soc=_fraction(_get(b, "socStart", "soc", "soc_start", default=0.5), f"{where}.soc"),
            min_soc=_fraction(_get(b, "minSoc", "min_soc", default=0.1), f"{where}.minSoc"),
            max_soc=_fraction(_get(b, "maxSoc", "max_soc", default=0.95), f"{where}.maxSoc"),
            round_trip_efficiency=_number(
                _get(b, "roundTripEfficiency", "round_trip_efficiency", default=0.9),
                f"{where}.roundTripEfficiency", positive=True, maximum=1),
        )
        if battery.min_soc >= battery.max_soc:
            raise StationError(f"{where}.minSoc: must be below maxSoc")
    # An agent config names a PV inverter but not its size: assume 30 % of the grid capacity.
    pv_default = 0.3 * capacity if st.get("pv_inverter") else 0.0
    pv_peak = _number(_get(st, "pvPeak", "pv_peak", "pv_peak_kw", default=pv_default),
                      f"{pre}pvPeak", minimum=0)

    spec = StationSpec(str(station_id), capacity, tuple(chargers), battery, pv_peak,
                       circuits=circuits)
    return _with_scenario(spec, scenario) if scenario else spec


def _with_scenario(spec: StationSpec, scenario: dict) -> StationSpec:
    series = scenario.get("series") or []
    if not isinstance(series, list):
        raise StationError("series: must be a list")
    start = _time(series[0].get("start"), "series[0].start") if series else None
    pv: list[float] = []
    base: list[float] = []
    for i, slot in enumerate(series):
        pv.append(_number(slot.get("pvPower", 0.0), f"series[{i}].pvPower", minimum=0))
        base.append(_number(slot.get("baseLoad", 0.0), f"series[{i}].baseLoad"))
    chargers = {c.id: c for c in spec.chargers}
    v2g = scenario.get("v2g") or {}
    if not isinstance(v2g, dict):
        raise StationError("v2g: must be an object")
    v2g_min_soc = _number(v2g.get("v2gMinSoc", 0.2), "v2g.v2gMinSoc", minimum=0, maximum=1)
    v2g_max_kw = _number(v2g.get("maxPower", 22.0), "v2g.maxPower", minimum=0)
    evs: list[EvArrival] = []
    for i, ev in enumerate(scenario.get("evs") or []):
        where = f"evs[{i}]"
        conn = ev.get("connectorId") or {}
        cid, idx = conn.get("chargerId"), conn.get("idx", 1)
        if cid not in chargers:
            raise StationError(f"{where}.connectorId.chargerId: unknown charger {cid!r}")
        if not isinstance(idx, int) or not 1 <= idx <= chargers[cid].connectors:
            raise StationError(f"{where}.connectorId.idx: no connector {idx!r} on {cid}")
        if start is None:
            raise StationError(f"{where}: a scenario with EVs needs a 'series' with a start")
        arrival = (_time(ev.get("arrival"), f"{where}.arrival") - start).total_seconds()
        departure = (_time(ev.get("departure"), f"{where}.departure") - start).total_seconds()
        if departure <= arrival:
            raise StationError(f"{where}.departure: must be after arrival")
        evs.append(EvArrival(
            session_id=str(ev.get("sessionId", f"EV{i}")), charger_id=cid, idx=idx,
            arrival_s=arrival, departure_s=departure,
            capacity_kwh=_number(ev.get("batteryCapacity"), f"{where}.batteryCapacity",
                                 positive=True),
            soc=_number(ev.get("socArrival", 0.2), f"{where}.socArrival", minimum=0, maximum=1),
            energy_needed_kwh=_number(ev.get("energyNeeded"), f"{where}.energyNeeded",
                                      minimum=0),
            max_kw=_number(ev.get("vehicleMaxPower"), f"{where}.vehicleMaxPower", positive=True),
            v2g=bool(ev.get("v2g", False)),
            v2g_min_soc=v2g_min_soc,
            v2g_max_kw=v2g_max_kw,
            phases=_ev_phases(ev.get("phases", 3), f"{where}.phases"),
        ))
    evs.sort(key=lambda e: e.arrival_s)
    return StationSpec(spec.station_id, spec.grid_capacity_kw, spec.chargers, spec.battery,
                       spec.pv_peak_kw, start, 900.0, tuple(pv), tuple(base), tuple(evs),
                       spec.circuits)


def _ev_phases(value: Any, where: str) -> int:
    if value not in (1, 2, 3) or isinstance(value, bool):
        raise StationError(f"{where}: must be 1, 2 or 3")
    return int(value)


def _rotation(value: Any, where: str) -> tuple[int, int, int]:
    """"L2L3L1" -> (1, 2, 0): the grid phase each of the charger's conductors is wired to."""
    text = str(value)
    if len(text) != 6 or sorted(text[1::2]) != ["1", "2", "3"] or text[0::2] != "LLL":
        raise StationError(f"{where}: must be a permutation of L1L2L3 such as L2L3L1")
    return tuple(int(text[2 * q + 1]) - 1 for q in range(3))  # type: ignore[return-value]


def _entries(raw: Any, path: str, what: str) -> Iterator[tuple[str, dict, str]]:
    """A list of objects with unique non-empty string ids: (where, object, id) for each."""
    if not isinstance(raw, list):
        raise StationError(f"{path}: must be a list")
    seen: set[str] = set()
    for i, c in enumerate(raw):
        where = f"{path}[{i}]"
        if not isinstance(c, dict):
            raise StationError(f"{where}: must be an object")
        cid = c.get("id")
        if not isinstance(cid, str) or not cid:
            raise StationError(f"{where}.id: must be a non-empty string")
        if cid in seen:
            raise StationError(f"{where}.id: duplicate {what} id {cid!r}")
        seen.add(cid)
        yield where, c, cid


def _circuits(raw: Any, pre: str, chargers: list[ChargerSpec]) -> tuple[CircuitSpec, ...]:
    out: list[CircuitSpec] = []
    for where, c, cid in _entries(raw, f"{pre}circuits", "circuit"):
        meter = c.get("meter", False)  # the agent's config names the meter device instead
        if not isinstance(meter, bool | str):
            raise StationError(f"{where}.meter: must be true or false")
        rating = _get(c, "maxCurrent", "max_current", "max_current_a", default=math.inf)
        out.append(CircuitSpec(
            cid,
            math.inf if rating == math.inf else _number(rating, f"{where}.maxCurrent",
                                                        positive=True),
            c.get("parent"),
            _number(_get(c, "baseLoad", "base_load", "base_load_kw", default=0.0),
                    f"{where}.baseLoad", minimum=0),
            bool(meter),
        ))
    ids = {x.id for x in out}
    for i, circ in enumerate(out):
        if circ.parent is not None and circ.parent not in ids:
            raise StationError(f"{pre}circuits[{i}].parent: no circuit {circ.parent!r}")
        seen, at = {circ.id}, circ.parent
        while at is not None:
            if at in seen:
                raise StationError(f"{pre}circuits[{i}].parent: the circuits form a cycle")
            seen.add(at)
            at = next(x.parent for x in out if x.id == at)
    for i, ch in enumerate(chargers):
        if ch.circuit is not None and ch.circuit not in ids:
            raise StationError(f"{pre}chargers[{i}].circuit: no circuit {ch.circuit!r}")
    return tuple(out)
