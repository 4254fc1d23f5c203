"""Day replay: a station day file run in simulated time with the real allocator and planner.

The controller sees what a station would: the day's series (prices, carbon, PV and
base-load forecasts) from the start; each EV only from its arrival, with its departure and
energy target from then on. Every step (60 s by default) the real `allocator.allocate`
decides the actual powers (it is the safety authority); with the `planner` policy the
planner re-plans every `replan_minutes` of simulated time and on every arrival, and its
current slot narrows the allocator's request (`allocator.planner.apply_plan`).
A re-plan that fails or hits `solve_time_limit` is survived as the daemon's PlannerTask
survives it: no plan until one succeeds, the allocator sharing plainly (fair sharing)
meanwhile; a plan is followed while its horizon covers the step, then dropped the same way.
Each failure is counted in the result (`failedPlans`).

Physics: an EV stores its charger power times the charging efficiency and takes no more
than its energy target; V2G delivers power out of the vehicle at the V2G efficiency, never
below v2gMinSoc; the stationary battery charges and discharges at the square root of its
round-trip efficiency, within its SoC window. Meter samples feed a `SavingsLedger`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from agent.energy.foresight import Foresight, Tuning
from agent.energy.foresight import reserve_energy as _reserve_kwh
from agent.energy.savings import SavingsLedger, savings_pct
from agent.energy.savings import refill_cost as _refill_cost
from allocator.forecast import SessionRecord
from allocator.planner import (
    BatterySpec,
    ChargerSpec,
    Plan,
    PlanError,
    Planner,
    PlanRequest,
    SessionSpec,
    apply_plan,
    reserve_value,
    v2g_setpoints,
)

Allocate = Callable[[dict[str, Any]], dict[str, Any]]
# planner: the rolling plan; uncontrolled: every EV flat out, no battery (the baseline);
# fair: the allocator's fair sharing with the battery only holding the grid capacity (what
# the station does without a plan).
POLICIES = ("planner", "uncontrolled", "fair")
# HiGHS time limit per re-plan (s): what the daemon's planner.solve_timeout_s defaults to.
SOLVE_TIME_LIMIT_S = 5.0
# The perfect-foresight LP is one solve over the whole day, not a control decision: it
# gets a generous limit of its own so a loaded machine does not lose the comparison.
OPTIMUM_TIME_LIMIT_S = 60.0


class DayError(ValueError):
    """The day file is invalid; the message names the field ("field: problem")."""


@dataclass(frozen=True)
class Ev:
    session_id: str
    charger_id: str
    idx: int
    arrival_h: float
    departure_h: float
    energy_needed: float  # kWh into the battery
    max_power: float
    v2g: bool
    capacity: float | None  # kWh; needed for V2G (energy above v2gMinSoc)
    soc_arrival: float | None
    phases: int | None = None  # 1, 2 or 3 (None: its charger's)


@dataclass(frozen=True)
class Battery:
    capacity: float
    max_charge: float
    max_discharge: float
    soc_start: float
    min_soc: float
    max_soc: float
    round_trip: float


@dataclass(frozen=True)
class Day:
    station_id: str
    start: datetime
    slot_hours: float
    grid_capacity: float
    chargers: dict[str, tuple[float, int]]  # id -> (max kW, connectors)
    battery: Battery | None
    demand_charge: float
    charging_efficiency: float
    v2g_efficiency: float
    v2g_max_power: float
    v2g_min_soc: float
    import_price: np.ndarray
    export_price: np.ndarray
    pv: np.ndarray
    base_load: np.ndarray
    carbon: np.ndarray
    evs: tuple[Ev, ...]
    # The electrical tree, in the allocator's contract (docs/allocation.md): circuits, each
    # charger's place (circuit, phases, phaseRotation, maxCurrent) and the voltage.
    circuits: tuple[dict[str, Any], ...] = ()
    charger_tree: dict[str, dict[str, Any]] = field(default_factory=dict)
    voltage: float = 230.0

    @property
    def hours(self) -> float:
        return len(self.import_price) * self.slot_hours


# -- loading and validation -------------------------------------------------------------

def _num(obj: dict[str, Any], key: str, where: str, *, lo: float | None = None,
         hi: float | None = None, default: float | None = None) -> float:
    if key not in obj or obj[key] is None:
        if default is not None:
            return default
        raise DayError(f"{where}.{key}: missing")
    v = obj[key]
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise DayError(f"{where}.{key}: must be a number, got {v!r}")
    if lo is not None and v < lo:
        bound = "> 0" if 0 < lo < 1e-6 else f">= {lo:g}"
        raise DayError(f"{where}.{key}: must be {bound}, got {v}")
    if hi is not None and v > hi:
        raise DayError(f"{where}.{key}: must be <= {hi:g}, got {v}")
    return float(v)


def _time(obj: dict[str, Any], key: str, where: str) -> datetime:
    v = obj.get(key)
    if not isinstance(v, str):
        raise DayError(f"{where}.{key}: missing ISO-8601 time")
    try:
        t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise DayError(f"{where}.{key}: not an ISO-8601 time: {v!r}") from None
    if t.tzinfo is None:
        raise DayError(f"{where}.{key}: needs a UTC offset (e.g. 'Z'): {v!r}")
    return t


def _obj(parent: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    v = parent.get(key)
    if not isinstance(v, dict):
        raise DayError(f"{where}{key}: missing or not an object")
    return v


def parse_day(doc: Any) -> Day:
    """Validate a decoded day file; raise DayError naming the first bad field."""
    if not isinstance(doc, dict):
        raise DayError("day: the file must hold a JSON object")
    st = _obj(doc, "station", "")
    grid = _num(st, "gridCapacity", "station", lo=1e-9)
    raw_chargers = st.get("chargers")
    if not isinstance(raw_chargers, list) or not raw_chargers:
        raise DayError("station.chargers: missing or empty list")
    chargers: dict[str, tuple[float, int]] = {}
    for i, c in enumerate(raw_chargers):
        where = f"station.chargers[{i}]"
        if not isinstance(c, dict) or not isinstance(c.get("id"), str) or not c["id"]:
            raise DayError(f"{where}.id: missing charger id")
        if c["id"] in chargers:
            raise DayError(f"{where}.id: duplicate charger {c['id']!r}")
        conns = c.get("connectors", 1)
        if not isinstance(conns, int) or isinstance(conns, bool) or conns < 1:
            raise DayError(f"{where}.connectors: must be an integer >= 1")
        chargers[c["id"]] = (_num(c, "maxPower", where, lo=1e-9), conns)
    circuits, charger_tree = _tree(st, raw_chargers)
    voltage = _num(st, "voltage", "station", lo=1.0, default=230.0)
    battery = None
    if st.get("battery") is not None:
        b = _obj(st, "battery", "station.")
        w = "station.battery"
        battery = Battery(
            capacity=_num(b, "capacity", w, lo=1e-9),
            max_charge=_num(b, "maxChargePower", w, lo=0),
            max_discharge=_num(b, "maxDischargePower", w, lo=0),
            soc_start=_num(b, "socStart", w, lo=0, hi=1),
            min_soc=_num(b, "minSoc", w, lo=0, hi=1, default=0.0),
            max_soc=_num(b, "maxSoc", w, lo=0, hi=1, default=1.0),
            round_trip=_num(b, "roundTripEfficiency", w, lo=1e-9, hi=1, default=0.9),
        )
        if battery.min_soc > battery.max_soc:
            raise DayError("station.battery.minSoc: must not exceed maxSoc")
    tariff = doc.get("tariff") or {}
    if not isinstance(tariff, dict):
        raise DayError("tariff: must be an object")
    demand = _num(tariff, "demandCharge", "tariff", lo=0, default=0.0)
    v2g = doc.get("v2g") or {}
    if not isinstance(v2g, dict):
        raise DayError("v2g: must be an object")
    v2g_max = _num(v2g, "maxPower", "v2g", lo=0, default=22.0)
    v2g_eff = _num(v2g, "efficiency", "v2g", lo=1e-9, hi=1, default=0.9)
    v2g_min = _num(v2g, "v2gMinSoc", "v2g", lo=0, hi=1, default=0.2)
    eta_c = _num(doc, "chargingEfficiency", "day", lo=1e-9, hi=1, default=0.95)

    series = doc.get("series")
    if not isinstance(series, list) or not series:
        raise DayError("series: missing or empty list")
    cols: dict[str, list[float]] = {k: [] for k in
                                    ("importPrice", "exportPrice", "pvPower", "baseLoad",
                                     "carbonIntensity")}
    starts = []
    for i, row in enumerate(series):
        where = f"series[{i}]"
        if not isinstance(row, dict):
            raise DayError(f"{where}: must be an object")
        starts.append(_time(row, "start", where))
        cols["importPrice"].append(_num(row, "importPrice", where))
        cols["exportPrice"].append(_num(row, "exportPrice", where, default=0.0))
        cols["pvPower"].append(_num(row, "pvPower", where, lo=0, default=0.0))
        cols["baseLoad"].append(_num(row, "baseLoad", where, lo=0, default=0.0))
        cols["carbonIntensity"].append(_num(row, "carbonIntensity", where, lo=0, default=0.0))
    slot = timedelta(minutes=15) if len(starts) < 2 else starts[1] - starts[0]
    if slot <= timedelta(0):
        raise DayError("series[1].start: slots must move forward in time")
    for i in range(1, len(starts)):
        if starts[i] - starts[i - 1] != slot:
            raise DayError(f"series[{i}].start: slots must be evenly spaced ({slot})")
    start = starts[0]
    slot_h = slot.total_seconds() / 3600.0
    end_h = len(starts) * slot_h

    def hours(t: datetime) -> float:
        return (t - start).total_seconds() / 3600.0

    raw_evs = doc.get("evs", [])
    if not isinstance(raw_evs, list):
        raise DayError("evs: must be a list")
    evs = []
    seen: set[str] = set()
    for i, e in enumerate(raw_evs):
        where = f"evs[{i}]"
        if not isinstance(e, dict):
            raise DayError(f"{where}: must be an object")
        sid = e.get("sessionId")
        if not isinstance(sid, str) or not sid:
            raise DayError(f"{where}.sessionId: missing")
        if sid in seen:
            raise DayError(f"{where}.sessionId: duplicate {sid!r}")
        seen.add(sid)
        conn = e.get("connectorId")
        if not isinstance(conn, dict) or conn.get("chargerId") not in chargers:
            raise DayError(f"{where}.connectorId: unknown charger "
                           f"{(conn or {}).get('chargerId') if isinstance(conn, dict) else conn!r}")
        idx = conn.get("idx", 1)
        if not isinstance(idx, int) or not 1 <= idx <= chargers[conn["chargerId"]][1]:
            raise DayError(f"{where}.connectorId.idx: no connector {idx!r} on "
                           f"{conn['chargerId']}")
        arr, dep = hours(_time(e, "arrival", where)), hours(_time(e, "departure", where))
        if dep <= arr:
            raise DayError(f"{where}.departure: must be after arrival")
        if arr < 0 or arr >= end_h:
            raise DayError(f"{where}.arrival: outside the day's series")
        cap = e.get("batteryCapacity")
        soc = e.get("socArrival")
        wants_v2g = e.get("v2g", False)
        if not isinstance(wants_v2g, bool):
            raise DayError(f"{where}.v2g: must be true or false")
        if wants_v2g:
            cap = _num(e, "batteryCapacity", where, lo=1e-9)
            soc = _num(e, "socArrival", where, lo=0, hi=1)
        evs.append(Ev(
            session_id=sid, charger_id=conn["chargerId"], idx=idx, arrival_h=arr,
            departure_h=min(dep, end_h),
            energy_needed=_num(e, "energyNeeded", where, lo=0),
            max_power=_num(e, "vehicleMaxPower", where, lo=1e-9),
            v2g=wants_v2g,
            capacity=float(cap) if isinstance(cap, int | float) else None,
            soc_arrival=float(soc) if isinstance(soc, int | float) else None,
            phases=_phases(e, where),
        ))
    _check_connector_overlaps(evs)
    return Day(
        station_id=str(st.get("stationId", "station")), start=start, slot_hours=slot_h,
        grid_capacity=grid, chargers=chargers, battery=battery, demand_charge=demand,
        charging_efficiency=eta_c, v2g_efficiency=v2g_eff, v2g_max_power=v2g_max,
        v2g_min_soc=v2g_min,
        import_price=np.array(cols["importPrice"]), export_price=np.array(cols["exportPrice"]),
        pv=np.array(cols["pvPower"]), base_load=np.array(cols["baseLoad"]),
        carbon=np.array(cols["carbonIntensity"]),
        evs=tuple(sorted(evs, key=lambda ev: ev.arrival_h)),
        circuits=circuits, charger_tree=charger_tree, voltage=voltage,
    )


ROTATIONS = ("L1L2L3", "L1L3L2", "L2L1L3", "L2L3L1", "L3L1L2", "L3L2L1")


def _phases(e: dict[str, Any], where: str) -> int | None:
    value = e.get("phases")
    if value is None:
        return None
    if value not in (1, 2, 3) or isinstance(value, bool):
        raise DayError(f"{where}.phases: must be 1, 2 or 3")
    return int(value)


def _tree(st: dict[str, Any], raw_chargers: list[Any]
          ) -> tuple[tuple[dict[str, Any], ...], dict[str, dict[str, Any]]]:  # fmt: skip
    """The day's circuits and each charger's place in them (the allocator's contract)."""
    raw = st.get("circuits") or []
    if not isinstance(raw, list):
        raise DayError("station.circuits: must be a list")
    circuits: list[dict[str, Any]] = []
    for i, c in enumerate(raw):
        where = f"station.circuits[{i}]"
        if not isinstance(c, dict) or not isinstance(c.get("id"), str) or not c["id"]:
            raise DayError(f"{where}.id: missing circuit id")
        row: dict[str, Any] = {"id": c["id"], "parent": c.get("parent")}
        for key in ("maxCurrent", "maxPower"):
            if c.get(key) is not None:
                row[key] = _num(c, key, where, lo=1e-9)
        circuits.append(row)
    ids = {c["id"] for c in circuits}
    if len(ids) != len(circuits):
        raise DayError("station.circuits: duplicate circuit id")
    for i, c in enumerate(circuits):
        if c["parent"] is not None and c["parent"] not in ids:
            raise DayError(f"station.circuits[{i}].parent: no circuit {c['parent']!r}")
    tree: dict[str, dict[str, Any]] = {}
    for i, c in enumerate(raw_chargers):
        where = f"station.chargers[{i}]"
        place: dict[str, Any] = {}
        if c.get("circuit") is not None:
            if c["circuit"] not in ids:
                raise DayError(f"{where}.circuit: no circuit {c['circuit']!r}")
            place["circuit"] = c["circuit"]
        if c.get("phases") is not None:
            if c["phases"] not in (1, 3) or isinstance(c["phases"], bool):
                raise DayError(f"{where}.phases: must be 1 or 3")
            place["phases"] = int(c["phases"])
        if c.get("phaseRotation") is not None:
            if c["phaseRotation"] not in ROTATIONS:
                raise DayError(f"{where}.phaseRotation: must be a permutation of L1L2L3")
            place["phaseRotation"] = c["phaseRotation"]
        if c.get("maxCurrent") is not None:
            place["maxCurrent"] = _num(c, "maxCurrent", where, lo=1e-9)
        tree[c["id"]] = place
    return tuple(circuits), tree


def circuit_currents(day: Day, powers: dict[str, float], evs: dict[str, Ev]) -> dict[str, list[float]]:
    """Each circuit's current per grid phase (A) for these session powers (kW): an EV on k
    phases draws 1000 P / (k V) on its charger's first k conductors, through the rotation."""
    by_id = {c["id"]: c for c in day.circuits}
    out = {cid: [0.0, 0.0, 0.0] for cid in by_id}
    for sid, kw in powers.items():
        ev = evs[sid]
        place = day.charger_tree.get(ev.charger_id, {})
        rotation = place.get("phaseRotation", "L1L2L3")
        k = min(ev.phases or 3, place.get("phases", 3))
        amps = max(0.0, kw) * 1000.0 / (k * day.voltage)
        at, seen = place.get("circuit"), set()
        while at is not None and at not in seen:
            seen.add(at)
            for q in range(k):
                out[at][int(rotation[2 * q + 1]) - 1] += amps
            at = by_id[at]["parent"]
    return out


def _check_connector_overlaps(evs: list[Ev]) -> None:
    by_conn: dict[tuple[str, int], list[Ev]] = {}
    for ev in evs:
        by_conn.setdefault((ev.charger_id, ev.idx), []).append(ev)
    for (cid, idx), group in by_conn.items():
        group.sort(key=lambda ev: ev.arrival_h)
        for a, b in zip(group, group[1:], strict=False):
            if b.arrival_h < a.departure_h:
                raise DayError(f"evs[{b.session_id}].arrival: connector {cid}/{idx} is still "
                               f"taken by {a.session_id}")


def load_day(path: str | Path) -> Day:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise DayError(f"scenario: cannot read {path}: {exc.strerror}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DayError(f"scenario: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    return parse_day(doc)


# -- simulation -------------------------------------------------------------------------

@dataclass
class _EvState:
    ev: Ev
    stored: float = 0.0  # kWh net into the battery since arrival (V2G makes it go down)
    v2g_out: float = 0.0  # kWh V2G delivered at the charger

    def headroom(self) -> float:
        return max(0.0, self.ev.energy_needed - self.stored)

    def v2g_available(self, min_soc: float) -> float:
        """kWh the vehicle holds above v2gMinSoc."""
        if self.ev.capacity is None or self.ev.soc_arrival is None:
            return 0.0
        held = self.ev.soc_arrival * self.ev.capacity + self.stored
        return max(0.0, held - min_soc * self.ev.capacity)


@dataclass
class ReplayResult:
    policy: str
    ledger: SavingsLedger
    energy_requested: float
    energy_delivered: float
    unmet_energy: float
    v2g_energy: float
    plan_solve_seconds: list[float] = field(default_factory=list)
    wall_seconds: float = 0.0
    battery_end_energy: float | None = None
    plan_failures: int = 0  # re-plans that failed or timed out (the replay went on)
    plan_errors: list[str] = field(default_factory=list)  # their messages, in order
    unmet_by_session: dict[str, float] = field(default_factory=dict)  # kWh short, > 0 only
    circuit_peak_a: dict[str, list[float]] = field(default_factory=dict)  # per grid phase


@dataclass(frozen=True)
class PlanPoint:
    """The replay's state when it made a plan, and the plan: what the daemon-equals-replay
    test gives the daemon's planner to plan from (tests/planner/test_daemon_equals_replay.py)."""

    t: float  # hours from the day's start
    stored: dict[str, float]  # session id -> kWh stored in its vehicle so far
    battery_energy: float | None  # kWh
    peak_so_far: float  # kW, the day's finished intervals
    imported_in_slot: float  # kWh imported so far in the running slot
    request: PlanRequest
    plan: Plan


def simulate(day: Day, policy: str = "planner", *, step_s: float = 60.0,
             replan_minutes: float = 15.0, allocate: Allocate | None = None,
             horizon_slots: int = 96, tuning: Tuning | None = None,
             solve_time_limit: float = SOLVE_TIME_LIMIT_S,
             history: Sequence[Day] = (),
             on_plan: Callable[[PlanPoint], None] | None = None) -> ReplayResult:
    """Run the day under `policy`; every step calls the real allocator. Each re-plan may
    take at most `solve_time_limit` seconds of HiGHS time; a failed one is survived.
    `history`: earlier days of the station; the arrival forecast learns from their
    sessions (a station without history plans from `station_prior`). `on_plan` is told
    every plan made, with the state it was made from."""
    if policy not in POLICIES:
        raise DayError(f"policy: must be one of {', '.join(POLICIES)}")
    if not 0 < step_s <= 60:
        raise DayError("step: must be in (0, 60] seconds")
    if not (math.isfinite(solve_time_limit) and solve_time_limit > 0):
        raise DayError(f"solve_time_limit: must be > 0 seconds, got {solve_time_limit}")
    if allocate is None:
        from allocator import allocate as _allocate

        allocate = _allocate
    wall0 = time.perf_counter()
    sh = day.slot_hours
    step_h = step_s / 3600.0
    # Steps never straddle a slot boundary: slot length divided into whole steps.
    per_slot = max(1, round(sh / step_h))
    ledger = SavingsLedger(day.demand_charge, sh)
    planner = Planner(time_limit=solve_time_limit) if policy == "planner" else None
    solve_times: list[float] = []
    plan_errors: list[str] = []
    states = {ev.session_id: _EvState(ev) for ev in day.evs}
    b = day.battery
    use_battery = b is not None and policy != "uncontrolled"
    eta_b = math.sqrt(b.round_trip) if b is not None else 1.0
    b_energy = b.soc_start * b.capacity if b is not None else 0.0
    plan: Plan | None = None
    plan_origin = 0.0
    next_replan = 0.0
    known: set[str] = set()
    tuning = tuning or Tuning()
    foresight = learn_arrivals(day, history, tuning)
    ev_by_id = {ev.session_id: ev for ev in day.evs}
    peaks = {c["id"]: [0.0, 0.0, 0.0] for c in day.circuits}
    for t, step_h, slot in _steps(day, per_slot):
        active = [s for s in states.values()
                  if s.ev.arrival_h < t + step_h - 1e-12 and s.ev.departure_h > t + 1e-12]
        arrived = {s.ev.session_id for s in active} - known
        if planner is not None and (t >= next_replan - 1e-9 or arrived):
            known |= arrived
            req = _plan_request(day, t, slot, active, b_energy, ledger, horizon_slots,
                                foresight)
            try:
                fresh = planner.plan(req)
            except Exception as exc:  # as the daemon: a failed re-plan never stops control
                plan_errors.append(str(exc) or type(exc).__name__)
                # As agent/energy/planning.py: the failed plan's predecessor is dropped too (it
                # never saw this arrival, and its import cap would starve it).
                plan = None
            else:
                plan, plan_origin = fresh, t
                solve_times.append(fresh.solve_seconds + fresh.build_seconds)
                if on_plan is not None:
                    on_plan(PlanPoint(
                        t, {s.ev.session_id: s.stored for s in active},
                        b_energy if b is not None else None, req.peak_so_far,
                        req.imported_in_first_slot, req, fresh))
            if t >= next_replan - 1e-9:
                next_replan = t + replan_minutes / 60.0
        if plan is not None and t - plan_origin >= _horizon_h(plan) - 1e-9:
            plan = None  # the last plan ran out: plain fair sharing until one succeeds
        request = _allocator_request(day, slot, active, step_h)
        v2g: dict[str, float] = {}
        if plan is not None and use_battery and b is not None:
            # As the daemon: the battery block, which apply_plan narrows to the plan's
            # direction and gives the plan's setpoint for rule 5 to follow.
            request["battery"] = _battery_block(b, b_energy, step_h, eta_b)
        if plan is not None:
            current = ledger.intervals[slot].import_kwh if len(ledger.intervals) > slot else 0.0
            # The step follows the plan's average over the step, not its value at the
            # step's start (sub-intervals can be shorter than a step).
            at = t - plan_origin + 1e-9
            request = apply_plan(request, plan, at, interval_import_kwh=current,
                                 interval_remaining_h=(slot + 1) * sh - t, window_h=step_h)
            v2g = v2g_setpoints(plan, at, step_h)
        # V2G vehicles that discharge are not charging this step: the allocator sees them
        # at zero so their charger's share goes to others.
        for s in request["sessions"]:
            if s["sessionId"] in v2g:
                s["powerCap"] = 0.0
        # What the V2G vehicles deliver this step (step average, kW), decided before the
        # allocation: the plan counts on it to feed the other EVs, so the allocator may too.
        v2g_kw: dict[str, float] = {}
        v2g_supply = 0.0
        for s in active:
            sid = s.ev.session_id
            if sid in v2g and s.ev.v2g:
                limit = min(v2g[sid], day.v2g_max_power, day.chargers[s.ev.charger_id][0])
                energy_cap = s.v2g_available(day.v2g_min_soc) * day.v2g_efficiency
                v2g_kw[sid] = min(limit, energy_cap / step_h)
                v2g_supply += v2g_kw[sid]
        # As the daemon (Controller._fill): a supply like PV, so rule 5 never exports it.
        request["pvPower"] += v2g_supply
        b_max = 0.0
        if use_battery and b is not None and plan is None:
            # Fair sharing: the allocator may count on the battery's full discharge
            # headroom, which holds the grid capacity (below).
            b_max = _battery_feasible(b, b.max_discharge, b_energy, step_h, eta_b)
            request["gridCapacity"] = request["gridCapacity"] + b_max
        import_cap = request["gridCapacity"] - b_max
        result = allocate(request)
        allocations: dict[str, float] = result["allocations"]
        # Every active EV is there for the whole step (`_steps` cuts at arrivals and
        # departures): a step's powers hold throughout it.
        powers: dict[str, float] = {}
        drawn: dict[str, float] = {}
        for s in active:
            sid = s.ev.session_id
            if sid in v2g_kw:
                kw = v2g_kw[sid]
                s.stored -= kw * step_h / day.v2g_efficiency
                s.v2g_out += kw * step_h
                powers[sid] = -kw
                continue
            kw = max(0.0, float(allocations.get(sid, 0.0)))
            # The vehicle takes no more than its remaining need (it stops when full).
            kw = min(kw, s.headroom() / (day.charging_efficiency * step_h))
            s.stored += kw * step_h * day.charging_efficiency
            powers[sid] = drawn[sid] = kw
        if peaks:
            for cid, amps in circuit_currents(day, drawn, ev_by_id).items():
                peaks[cid] = [max(a, b) for a, b in zip(peaks[cid], amps, strict=True)]
        b_set = 0.0
        if use_battery and b is not None:
            if plan is not None:
                # Rule 5 with the plan's setpoint (allocator/battery.py), as the daemon. The
                # result is rounded to 1e-6 kW: held to the block's limits, so the SoC never
                # steps past its window by that hair (the next plan would start outside it).
                blk = request["battery"]
                b_set = min(max(float(result["batteryPower"]), -blk["maxChargePower"]),
                            blk["maxDischargePower"])
            else:
                # Discharge only what would otherwise be imported above the capacity.
                load = day.base_load[slot] - day.pv[slot] + sum(powers.values())
                b_set = min(max(0.0, load - import_cap), b_max)
            if b_set >= 0:
                b_energy -= b_set * step_h / eta_b
            else:
                b_energy += -b_set * step_h * eta_b
        grid = day.base_load[slot] - day.pv[slot] + sum(powers.values()) - b_set
        # PV beyond the export limit is curtailed, not exported.
        grid = max(grid, -day.grid_capacity)
        ledger.record(t, step_h, grid, day.import_price[slot], day.export_price[slot],
                      day.carbon[slot], powers, b_set)
    requested = sum(ev.energy_needed for ev in day.evs)
    delivered = sum(min(s.stored, s.ev.energy_needed) for s in states.values())
    for s in states.values():
        ledger.record_vehicle(s.ev.session_id, max(s.stored + s.v2g_out / day.v2g_efficiency,
                                                   0.0), s.v2g_out / day.v2g_efficiency)
    return ReplayResult(
        policy=policy, ledger=ledger, energy_requested=requested, energy_delivered=delivered,
        unmet_energy=sum(s.headroom() for s in states.values()),
        v2g_energy=sum(s.v2g_out for s in states.values()),
        plan_solve_seconds=solve_times, wall_seconds=time.perf_counter() - wall0,
        battery_end_energy=b_energy if b is not None else None,
        plan_failures=len(plan_errors), plan_errors=plan_errors,
        unmet_by_session={sid: s.headroom() for sid, s in states.items() if s.headroom() > 1e-6},
        circuit_peak_a=peaks,
    )


def _horizon_h(plan: Plan) -> float:
    """Hours from the plan's start that it covers."""
    if not len(plan.slot_starts_h):
        return 0.0
    return float(plan.slot_starts_h[-1] + plan.slot_hours[-1])


def _battery_feasible(b: Battery, setpoint: float, energy: float, step_h: float,
                      eta: float) -> float:
    """Clamp a battery setpoint to the BMS limits and the SoC window over one step."""
    if setpoint >= 0:
        room = max(0.0, energy - b.min_soc * b.capacity) * eta / step_h
        return min(setpoint, b.max_discharge, room)
    room = max(0.0, b.max_soc * b.capacity - energy) / (eta * step_h)
    return -min(-setpoint, b.max_charge, room)


def _battery_block(b: Battery, energy: float, step_h: float, eta: float) -> dict[str, float]:
    """The allocator's battery object for one step: its limits clamped to what the SoC
    window allows over the step (`_battery_feasible`), soc and minSoc in %."""
    return {
        "soc": min(100.0, max(0.0, 100.0 * energy / b.capacity)),
        "minSoc": 100.0 * b.min_soc,
        "maxDischargePower": _battery_feasible(b, b.max_discharge, energy, step_h, eta),
        "maxChargePower": -_battery_feasible(b, -b.max_charge, energy, step_h, eta),
    }


def _allocator_request(day: Day, slot: int, active: list[_EvState],
                       step_h: float) -> dict[str, Any]:
    """The step's allocator request, without a battery block (`_battery_block` adds it
    under a plan; without one the replay hands the allocator the battery's discharge
    headroom as grid capacity)."""
    sessions = []
    for s in active:
        # A vehicle near its target draws only what completes it (what a real EV does).
        need_kw = s.headroom() / (day.charging_efficiency * step_h)
        sessions.append({
            "sessionId": s.ev.session_id,
            "connectorId": {"chargerId": s.ev.charger_id, "idx": s.ev.idx},
            "vehicleMaxPower": max(0.0, min(s.ev.max_power, need_kw)),
            **({"phases": s.ev.phases} if s.ev.phases is not None else {}),
        })
    return {
        "stationId": day.station_id,
        "gridCapacity": day.grid_capacity,
        "baseLoad": float(day.base_load[slot]),
        "pvPower": float(day.pv[slot]),
        "chargers": [{"id": cid, "maxPower": mp, "connectors": n, **day.charger_tree.get(cid, {})}
                     for cid, (mp, n) in day.chargers.items()],
        "sessions": sessions,
        **({"voltage": day.voltage, "circuits": [dict(c) for c in day.circuits]}
           if day.circuits else {}),
    }


def reserve_energy(b: Battery, hours: float | None) -> float:
    """kWh the replay's battery keeps against arrivals no plan can see yet
    (agent.energy.foresight.reserve_energy): sized from the battery's own limits only,
    never from a day's EV list."""
    return _reserve_kwh(b.capacity, b.min_soc, b.max_soc, b.max_discharge, hours)


def _steps(day: Day, per_slot: int) -> list[tuple[float, float, int]]:
    """(start h, length h, slot) of every simulation step: `per_slot` equal steps per slot,
    split at every arrival and departure inside a step, so each step holds an EV for all of
    it or not at all. The daemon's 250 ms cycle has no partial steps: an EV leaving 30 s
    into a 60 s step would otherwise keep its share for the whole step in the allocator's
    eyes while drawing half of it, and the EVs that stay lose that power. It also means no
    step holds two sessions on one connector (the allocator refuses that)."""
    sh = day.slot_hours
    step_h = sh / per_slot
    cuts: set[float] = set()
    for ev in day.evs:  # sorted by arrival
        cuts.update((ev.arrival_h, ev.departure_h))
    out: list[tuple[float, float, int]] = []
    for k in range(per_slot * len(day.import_price)):
        t0, t1 = k * step_h, (k + 1) * step_h
        inner = sorted(c for c in cuts if t0 + 1e-9 < c < t1 - 1e-9)
        edges = [t0, *inner, t1]
        out.extend((a, b - a, k // per_slot) for a, b in zip(edges, edges[1:], strict=False))
    return out


def learn_arrivals(day: Day, history: Sequence[Day], tuning: Tuning | None = None) -> Foresight:
    """The foresight a station would have on `day`, from the sessions of its history days
    (as the daemon's from its sessions table)."""
    return Foresight.from_history(tuning or Tuning(), day.chargers, [
        (h.start, h.hours, [
            SessionRecord(h.start + timedelta(hours=ev.arrival_h),
                          h.start + timedelta(hours=ev.departure_h), ev.energy_needed,
                          min(ev.max_power, h.chargers[ev.charger_id][0]))
            for ev in h.evs]) for h in history])


def _plan_request(day: Day, t: float, slot: int, active: list[_EvState], b_energy: float,
                  ledger: SavingsLedger, horizon_slots: int, foresight: Foresight,
                  ) -> PlanRequest:
    sh = day.slot_hours
    end = min(len(day.import_price), slot + horizon_slots)
    sl = slice(slot, end)
    slot_start = slot * sh
    first = slot_start + sh - t
    sessions = []
    for s in active:
        sessions.append(SessionSpec(
            session_id=s.ev.session_id, charger_id=s.ev.charger_id,
            arrival_h=max(0.0, s.ev.arrival_h - t), departure_h=s.ev.departure_h - t,
            energy_needed=s.headroom(), max_power=s.ev.max_power,
            v2g=s.ev.v2g, v2g_max_power=day.v2g_max_power,
            v2g_energy=s.v2g_available(day.v2g_min_soc),
        ))
    battery = None
    if day.battery is not None:
        b = day.battery
        eta = math.sqrt(b.round_trip)
        battery = BatterySpec(
            capacity=b.capacity, energy=b_energy, max_charge_power=b.max_charge,
            max_discharge_power=b.max_discharge, min_soc=b.min_soc, max_soc=b.max_soc,
            charge_efficiency=eta, discharge_efficiency=eta,
            # Hand the day back with the charge it started with, as the optimum must: an
            # honest day's account does not borrow from tomorrow's battery.
            end_energy=b.soc_start * b.capacity if end == len(day.import_price) else None,
            reserve_energy=foresight.reserve_kwh(b.capacity, b.min_soc, b.max_soc,
                                                 b.max_discharge),
            reserve_value=reserve_value(day.demand_charge, sh, foresight.tuning.reserve_rate),
        )
    chargers = [ChargerSpec(cid, mp) for cid, (mp, _n) in day.chargers.items()]
    first_h = max(first, 1e-6) if first < sh - 1e-9 else None
    today = (day.start, [SessionRecord(day.start + timedelta(hours=ev.arrival_h),
                                       day.start + timedelta(hours=ev.departure_h),
                                       ev.energy_needed, ev.max_power)
                         for ev in day.evs if ev.arrival_h < t])
    sessions, chargers, scenarios = foresight.extend(sessions, chargers,
                                          day.start + timedelta(hours=slot_start), end - slot,
                                          sh, first_h, today)
    current = ledger.intervals[slot] if len(ledger.intervals) > slot else None
    finished_peak = max((iv.peak_kw for iv in ledger.intervals[:slot]), default=0.0)
    return foresight.with_peak_floor(PlanRequest(
        import_price=day.import_price[sl], export_price=day.export_price[sl],
        pv_power=day.pv[sl], base_load=day.base_load[sl], carbon_intensity=day.carbon[sl],
        grid_capacity=day.grid_capacity, chargers=chargers,
        sessions=sessions, battery=battery, demand_charge=day.demand_charge,
        peak_so_far=finished_peak, slot_hours=sh, first_slot_hours=first_h,
        imported_in_first_slot=current.import_kwh if current is not None else 0.0,
        charging_efficiency=day.charging_efficiency, v2g_efficiency=day.v2g_efficiency,
        scenarios=scenarios,
    ), day.start + timedelta(hours=t))


def refill_cost(day: Day, result: ReplayResult) -> float:
    """EUR it really costs to hand the battery back with the charge the day started with
    (`agent.energy.savings.refill_cost`, the daemon's ledger uses the same): the cheapest
    way to buy the shortfall through the charging losses on top of the day's metered
    import, the demand charge on any higher peak included."""
    b = day.battery
    if b is None or result.battery_end_energy is None:
        return 0.0
    return _refill_cost(result.ledger, b.soc_start * b.capacity - result.battery_end_energy,
                        day.import_price, day.export_price, max_charge_kw=b.max_charge,
                        charge_efficiency=math.sqrt(b.round_trip),
                        grid_capacity_kw=day.grid_capacity, time_limit_s=OPTIMUM_TIME_LIMIT_S)


def result_cost(day: Day, result: ReplayResult) -> float:
    """A replay's cost as reported: the ledger's (energy and demand charge) plus what it
    really costs to refill the battery to its starting charge (`refill_cost`)."""
    return result.ledger.cost + refill_cost(day, result)


def optimum_request(day: Day) -> PlanRequest:
    """The whole day as one planning problem with every EV known from the start (perfect
    foresight; also what a depot with a published vehicle schedule can plan ahead)."""
    b = day.battery
    battery = None
    if b is not None:
        eta = math.sqrt(b.round_trip)
        # Ends the day with at least the charge it started with (end_energy None: as now).
        battery = BatterySpec(b.capacity, b.soc_start * b.capacity, b.max_charge,
                              b.max_discharge, b.min_soc, b.max_soc, eta, eta)
    sessions = [SessionSpec(
        ev.session_id, ev.charger_id, departure_h=ev.departure_h,
        energy_needed=ev.energy_needed, max_power=ev.max_power, arrival_h=ev.arrival_h,
        v2g=ev.v2g, v2g_max_power=day.v2g_max_power,
        v2g_energy=(max(0.0, (ev.soc_arrival - day.v2g_min_soc) * ev.capacity)
                    if ev.v2g and ev.capacity and ev.soc_arrival is not None else 0.0),
    ) for ev in day.evs]
    return PlanRequest(
        import_price=day.import_price, export_price=day.export_price, pv_power=day.pv,
        base_load=day.base_load, carbon_intensity=day.carbon, grid_capacity=day.grid_capacity,
        chargers=[ChargerSpec(cid, mp) for cid, (mp, _n) in day.chargers.items()],
        sessions=sessions, battery=battery, demand_charge=day.demand_charge,
        slot_hours=day.slot_hours, charging_efficiency=day.charging_efficiency,
        v2g_efficiency=day.v2g_efficiency,
    )


def optimum(day: Day, time_limit: float = OPTIMUM_TIME_LIMIT_S) -> dict[str, float]:
    """Perfect foresight: one LP over the whole day with every EV known from the start."""
    p = Planner(time_limit=time_limit).plan(optimum_request(day))
    sub = p.grid_power * p.slot_hours  # kWh per sub-interval
    price_imp, price_exp = day.import_price[p.slot_index], day.export_price[p.slot_index]
    energy_cost = float(np.sum(np.maximum(sub, 0) * price_imp - np.maximum(-sub, 0) * price_exp))
    peak = float(np.max(np.maximum(p.slot_energy(), 0.0), initial=0.0)) / day.slot_hours
    return {"cost": energy_cost + day.demand_charge * peak, "peak": peak,
            "unmet": float(sum(p.unmet.values())), "solveSeconds": p.solve_seconds}


def run(day: Day, policy: str = "planner", *, step_s: float = 60.0,
        replan_minutes: float = 15.0, allocate: Allocate | None = None,
        solve_time_limit: float = SOLVE_TIME_LIMIT_S,
        optimum_time_limit: float = OPTIMUM_TIME_LIMIT_S,
        history: Sequence[Day] = ()) -> dict[str, Any]:
    """The replay report (JSON keys as `sems replay --json` prints them). `history`:
    earlier days whose sessions the arrival forecast learns from."""
    actual = simulate(day, policy, step_s=step_s, replan_minutes=replan_minutes,
                      allocate=allocate, solve_time_limit=solve_time_limit, history=history)
    baseline = actual if policy == "uncontrolled" else simulate(
        day, "uncontrolled", step_s=step_s, allocate=allocate)
    # The optimum is a yardstick, not the replay's result: a solver that runs out of time on
    # it (a very large day, a loaded machine) leaves it out and says why, the rest stands.
    try:
        best_cost: float | None = optimum(day, optimum_time_limit)["cost"]
        optimum_error = None
    except PlanError as exc:
        best_cost, optimum_error = None, str(exc)
    cost, base_cost = result_cost(day, actual), baseline.ledger.cost
    report: dict[str, Any] = {
        "cost": round(cost, 2),
        "baselineCost": round(base_cost, 2),
        "savingsPct": round(savings_pct(cost, base_cost), 2),
        "peakKw": round(actual.ledger.peak_kw, 2),
        "energyRequested": round(actual.energy_requested, 2),
        "energyDelivered": round(actual.energy_delivered, 2),
        "unmetEnergy": round(actual.unmet_energy, 2),
        "v2gEnergy": round(actual.v2g_energy, 2),
        "batteryThroughput": round(actual.ledger.battery_throughput_kwh, 2),
        "co2Kg": round(actual.ledger.co2_kg, 2),
        "optimumCost": None if best_cost is None else round(best_cost, 2),
        "batteryStartKwh": None if day.battery is None else round(
            day.battery.soc_start * day.battery.capacity, 2),
        "batteryEndKwh": None if actual.battery_end_energy is None else round(
            actual.battery_end_energy, 2),
        "failedPlans": actual.plan_failures,
    }
    if optimum_error is not None:
        report["optimumError"] = optimum_error
    if day.circuits:  # the highest current per grid phase each circuit carried, A
        report["circuitPeakA"] = {cid: [round(a, 2) for a in amps]
                                  for cid, amps in actual.circuit_peak_a.items()}
    return report
