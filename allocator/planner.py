"""Horizon planner: one linear programme over the next day's slots, solved by HiGHS.

The real-time allocator keeps the station safe second by second; this planner decides,
slot by slot (15 minutes by default), how much each session should charge (or give back
through V2G), what the stationary battery should do and how much the station may import,
so that energy costs, the demand charge on the highest 15-minute import, carbon and battery
wear are lowest while every departure target is met whenever it can be.

Pure: imports neither `agent` nor `drivers` (dependency rule: agent -> allocator).

Formulation (energies per slot in kWh, so a session connected for part of a slot is
bounded by its power times the time it is connected):
  minimise  sum_t price_imp*imp - price_exp*exp + carbon*imp + wear*(bc+bd)
            + demand_charge*peak + penalty*(unmet + overload) + eps*t*charge
  s.t.      imp - exp + bd - bc + pv - curtail - base - sum charge + sum v2g = 0   (each slot)
            (imp [+ imported so far in the first slot]) / slot_h <= peak, peak >= peak so far
            imp <= min(grid capacity, demand-response cap) * dt  (+ overload slack)
            per charger: sum of its sessions' charge + v2g <= charger max * dt
            per session: charge <= min(vehicle, charger) * connected time, v2g likewise
            delivered + unmet >= energy target, delivered <= energy target
            V2G sessions: running energy >= -(energy above v2gMinSoc) at every slot
            battery: energy balance with efficiencies, min/max SoC, end >= end energy
With a battery reserve, a second solve adds  reserve_value*dt*short_t,  e_t + short_t >=
reserve (tapered near the horizon's end), with the first solve's peak as an upper bound.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import highspy
import numpy as np

from allocator.guidance import guidance_at

# Charging earlier is preferred when two slots cost the same: the planner cannot see future
# arrivals, so capacity freed now is worth a little. Small enough never to outweigh a price.
_EARLY_EPS = 1e-5
# Between two EVs, the one whose departure is nearer charges first when the cost is the same
# (earliest deadline first): a plan that feeds the long stays first and the short ones late
# has no slack left when the next re-plan sees an arrival, and the short stay leaves short.
_URGENT_EPS = 1e-4


# Per-slot values: a list or a numpy array.
Series = Sequence[float] | np.ndarray


class PlanError(ValueError):
    """A plan request is invalid; the message names the field ("field: problem")."""


@dataclass(frozen=True)
class ChargerSpec:
    id: str
    max_power: float  # kW shared by all its connectors


@dataclass(frozen=True)
class SessionSpec:
    """One connected (or announced) EV, seen from the plan's start (hours offsets)."""

    session_id: str
    charger_id: str
    departure_h: float  # hours from plan start
    energy_needed: float  # kWh into the vehicle battery still wanted by departure
    max_power: float  # kW the vehicle accepts
    arrival_h: float = 0.0  # hours from plan start; <= 0 when already connected
    v2g: bool = False
    v2g_max_power: float = 22.0  # kW the vehicle may discharge (maxV2gPower)
    v2g_energy: float = 0.0  # kWh in the vehicle above its v2gMinSoc, available to V2G
    # An EV whose real target is unknown (energy_needed is then only a default): it may
    # take up to `extra_energy` kWh more, each worth `extra_value` EUR to the plan, so it
    # keeps charging while that costs less (price, carbon, no higher peak) instead of
    # being paused at the default.
    extra_energy: float = 0.0
    extra_value: float = 0.0


@dataclass(frozen=True)
class BatterySpec:
    capacity: float  # kWh
    energy: float  # kWh stored now
    max_charge_power: float
    max_discharge_power: float
    min_soc: float = 0.1
    max_soc: float = 0.95
    charge_efficiency: float = math.sqrt(0.9)
    discharge_efficiency: float = math.sqrt(0.9)
    degradation_cost: float = 0.0  # EUR per kWh of throughput (charge + discharge)
    end_energy: float | None = None  # kWh required at horizon end; None: as much as now
    # EUR per kWh short of end_energy at the horizon's end; None makes end_energy a hard
    # constraint. A value (what refilling costs) lets the plan end lower when keeping the
    # charge would cost more, e.g. recharging on top of the day's peak.
    end_value: float | None = None
    available: bool = True  # False during a maintenance window: out of dispatch
    # The billing day's end inside the horizon (hours from the plan's start) and the kWh
    # the battery held when that day began: an honest day hands the battery back at least
    # as full (the daemon's rolling horizon crosses midnight; the replay's ends with its
    # day, where `end_energy` says the same). Falling short is priced above any way of
    # buying it back (`_DAY_END_SHORT_FACTOR`), so a plan that cannot reach it still solves.
    day_end_h: float | None = None
    day_end_energy: float | None = None
    # Robust reserve: kWh the battery should hold in every slot against arrivals the plan
    # cannot see yet (see `reserve_energy` in agent/energy/replay.py for sizing). Falling short is
    # allowed but costs `reserve_value` EUR per kWh per hour short (None: derived from the
    # demand charge, see `reserve_value()`). It is held in a second LP stage that may not
    # raise the peak the first stage chose, so it always yields to shaving a real peak.
    reserve_energy: float = 0.0
    reserve_value: float | None = None


@dataclass(frozen=True)
class Scenario:
    """One way the rest of the horizon may go: sessions (on chargers of their own) that
    exist in this scenario only, on top of the request's, and its probability.

    A request with scenarios is one LP with a copy of the plan per scenario: each has its
    own later slots and its own peak (the demand charge is the probability-weighted sum of
    the scenarios' peaks), and all share the decisions of the first billing slot, the one
    that is applied before the next re-plan (non-anticipativity)."""

    weight: float  # > 0; the scenarios' weights are normalised to sum to 1
    sessions: Sequence[SessionSpec] = ()
    chargers: Sequence[ChargerSpec] = ()


@dataclass(frozen=True)
class PlanRequest:
    """Everything the planner knows; per-slot sequences all have the horizon's length."""

    import_price: Series  # EUR/kWh
    export_price: Series  # EUR/kWh
    pv_power: Series  # kW forecast, slot average
    base_load: Series  # kW forecast, slot average
    grid_capacity: float  # kW
    chargers: Sequence[ChargerSpec]
    sessions: Sequence[SessionSpec] = ()
    battery: BatterySpec | None = None
    carbon_intensity: Series | None = None  # gCO2/kWh
    carbon_price: float = 0.0  # EUR per tonne CO2
    import_caps: Sequence[float | None] | None = None  # demand-response caps (kW), None=none
    export_capacity: float | None = None  # kW; defaults to grid capacity
    demand_charge: float = 0.0  # EUR per kW of the highest 15-minute average import
    peak_so_far: float = 0.0  # kW already reached in the billing period (sunk)
    # kW the plan takes the day's peak to reach anyway (a floor learnt from history,
    # agent/energy/foresight.py `Tuning.peak_floor`): imports up to it cost no demand
    # charge in the plan, so the battery is not spent shaving below a peak the day's
    # later arrivals will most likely set. 0: none.
    peak_floor: float = 0.0
    slot_hours: float = 0.25
    first_slot_hours: float | None = None  # shorter first slot when re-planning mid-slot
    imported_in_first_slot: float = 0.0  # kWh already imported in the running slot
    charging_efficiency: float = 0.95
    v2g_efficiency: float = 0.90
    unmet_penalty: float | None = None  # EUR/kWh; None: derived from prices
    # Scenarios of what the plan cannot see yet (see `Scenario`); empty: one plan. The
    # plan returned is the most probable scenario's, its first slot shared by all.
    scenarios: Sequence[Scenario] = ()

    @property
    def slots(self) -> int:
        return len(self.import_price)


@dataclass
class Plan:
    """Per-slot outputs. Powers are kW; session powers are while connected (<0: V2G)."""

    slot_starts_h: np.ndarray
    slot_hours: np.ndarray
    grid_power: np.ndarray  # planned net import (kW, >0 imports)
    import_cap: np.ndarray  # import the allocator may use without raising the peak (kW)
    battery_power: np.ndarray  # kW, >0 discharges into the station
    session_power: dict[str, np.ndarray]
    unmet: dict[str, float]  # kWh each session is planned to miss its target by
    peak: float
    objective: float
    status: str
    solve_seconds: float
    build_seconds: float
    battery_energy: np.ndarray = field(default_factory=lambda: np.zeros(0))
    billing_hours: float = 0.25  # the demand charge's averaging interval (a slot)
    slot_index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    session_present: dict[str, np.ndarray] = field(default_factory=dict)  # connected (bool)

    def slot_energy(self) -> np.ndarray:
        """Planned net import per billing slot (kWh), sub-intervals summed."""
        out = np.zeros(int(self.slot_index.max(initial=-1)) + 1)
        np.add.at(out, self.slot_index, self.grid_power * self.slot_hours)
        return out
    peak_cap: np.ndarray = field(default_factory=lambda: np.zeros(0))  # capacity / DR caps

    def mean_over(self, values: np.ndarray, hours: float, window_h: float,
                  mask: np.ndarray | None = None) -> float:
        """Time average of a per-sub-interval series over [hours, hours + window_h].

        A control step longer than a sub-interval (a 60 s replay step against a 20 s
        sub-interval at an arrival) must follow the plan's energy over the step; holding
        the value at the step's start for the whole step overshoots the slot's budget.
        `mask` limits the average to the sub-intervals it marks (a session's connected
        time: a step that ends after its departure must not dilute its power)."""
        if window_h <= 0:
            return float(values[self.slot_at(hours)])
        ends = self.slot_starts_h + self.slot_hours
        overlap = np.clip(np.minimum(ends, hours + window_h)
                          - np.maximum(self.slot_starts_h, hours), 0.0, None)
        if mask is not None:
            overlap = np.where(mask, overlap, 0.0)
        covered = float(overlap.sum())
        if covered <= 1e-12:
            return float(values[self.slot_at(hours)])
        return float(np.dot(overlap, values)) / covered

    def slot_at(self, hours: float) -> int:
        """Index of the slot containing `hours` (from plan start); clamped to the horizon."""
        ends = self.slot_starts_h + self.slot_hours
        idx = int(np.searchsorted(ends, hours, side="right"))
        return min(max(idx, 0), len(ends) - 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "objective": self.objective,
            "peak": self.peak,
            "slotStartsH": self.slot_starts_h.tolist(),
            "gridPower": self.grid_power.tolist(),
            "importCap": self.import_cap.tolist(),
            "batteryPower": self.battery_power.tolist(),
            "sessions": {k: v.tolist() for k, v in self.session_power.items()},
            "unmet": self.unmet,
            "solveSeconds": self.solve_seconds,
        }


class _Model:
    """Row-wise LP builder: columns with bounds and costs, rows as sparse (idx, val, lo, hi)."""

    def __init__(self) -> None:
        self.lo: list[float] = []
        self.hi: list[float] = []
        self.cost: list[float] = []
        self.starts: list[int] = [0]
        self.index: list[int] = []
        self.value: list[float] = []
        self.row_lo: list[float] = []
        self.row_hi: list[float] = []

    def col(self, lo: float, hi: float, cost: float = 0.0) -> int:
        self.lo.append(lo)
        self.hi.append(hi)
        self.cost.append(cost)
        return len(self.lo) - 1

    def row(self, cols: Sequence[int], vals: Sequence[float], lo: float, hi: float) -> None:
        self.index.extend(cols)
        self.value.extend(vals)
        self.starts.append(len(self.index))
        self.row_lo.append(lo)
        self.row_hi.append(hi)

    def solve(self, highs: highspy.Highs) -> tuple[str, np.ndarray, float]:
        lp = highspy.HighsLp()
        lp.num_col_ = len(self.lo)
        lp.num_row_ = len(self.row_lo)
        lp.col_cost_ = np.asarray(self.cost, dtype=np.float64)
        lp.col_lower_ = np.asarray(self.lo, dtype=np.float64)
        lp.col_upper_ = np.asarray(self.hi, dtype=np.float64)
        lp.row_lower_ = np.asarray(self.row_lo, dtype=np.float64)
        lp.row_upper_ = np.asarray(self.row_hi, dtype=np.float64)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
        lp.a_matrix_.num_col_ = lp.num_col_
        lp.a_matrix_.num_row_ = lp.num_row_
        lp.a_matrix_.start_ = np.asarray(self.starts, dtype=np.int32)
        lp.a_matrix_.index_ = np.asarray(self.index, dtype=np.int32)
        lp.a_matrix_.value_ = np.asarray(self.value, dtype=np.float64)
        highs.passModel(lp)
        highs.run()
        status = highs.modelStatusToString(highs.getModelStatus())
        x = np.asarray(highs.getSolution().col_value, dtype=np.float64)
        return status, x, float(highs.getInfo().objective_function_value)


def _series(req: PlanRequest, name: str, values: Series | None, n: int) -> np.ndarray:
    if values is None:
        return np.zeros(n)
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise PlanError(f"{name}: expected {n} slot values, got {len(values)}")
    if not np.all(np.isfinite(arr)):
        raise PlanError(f"{name}: values must be finite numbers")
    return arr


def validate(req: PlanRequest) -> None:
    """Raise PlanError naming the first bad field."""
    n = req.slots
    if n < 1:
        raise PlanError("import_price: at least one slot is required")
    for name in ("import_price", "export_price", "pv_power", "base_load"):
        _series(req, name, getattr(req, name), n)
    if req.carbon_intensity is not None:
        _series(req, "carbon_intensity", req.carbon_intensity, n)
    if req.import_caps is not None and len(req.import_caps) != n:
        raise PlanError(f"import_caps: expected {n} slot values, got {len(req.import_caps)}")
    if not (req.grid_capacity > 0):
        raise PlanError("grid_capacity: must be > 0 kW")
    if not (req.slot_hours > 0):
        raise PlanError("slot_hours: must be > 0")
    for i, sc in enumerate(req.scenarios):
        if not (math.isfinite(sc.weight) and sc.weight > 0):
            raise PlanError(f"scenarios[{i}].weight: must be a finite number > 0")
    if not (math.isfinite(req.peak_floor) and req.peak_floor >= 0):
        raise PlanError("peak_floor: must be a finite number >= 0 kW")
    if req.first_slot_hours is not None and not (0 < req.first_slot_hours <= req.slot_hours):
        raise PlanError("first_slot_hours: must be in (0, slot_hours]")
    if not (0 < req.charging_efficiency <= 1):
        raise PlanError("charging_efficiency: must be in (0, 1]")
    if not (0 < req.v2g_efficiency <= 1):
        raise PlanError("v2g_efficiency: must be in (0, 1]")
    chargers = {c.id for c in req.chargers}
    for c in req.chargers:
        if not (c.max_power > 0):
            raise PlanError(f"chargers[{c.id}].max_power: must be > 0 kW")
    seen: set[str] = set()
    for s in req.sessions:
        where = f"sessions[{s.session_id}]"
        if s.session_id in seen:
            raise PlanError(f"{where}: duplicate session id")
        seen.add(s.session_id)
        if s.charger_id not in chargers:
            raise PlanError(f"{where}.charger_id: unknown charger {s.charger_id!r}")
        if s.energy_needed < 0 or not math.isfinite(s.energy_needed):
            raise PlanError(f"{where}.energy_needed: must be >= 0 kWh")
        if s.max_power < 0:
            raise PlanError(f"{where}.max_power: must be >= 0 kW")
        if not s.departure_h >= s.arrival_h:
            raise PlanError(f"{where}.departure_h: must not be before arrival")
        if s.extra_energy < 0 or s.extra_value < 0:
            raise PlanError(f"{where}.extra_energy: must be >= 0")
        if s.v2g and (s.v2g_max_power < 0 or s.v2g_energy < 0):
            raise PlanError(f"{where}.v2g_energy: V2G power and energy must be >= 0")
    b = req.battery
    if b is not None:
        if not (b.capacity > 0):
            raise PlanError("battery.capacity: must be > 0 kWh")
        if not (0 <= b.min_soc <= b.max_soc <= 1):
            raise PlanError("battery.min_soc: need 0 <= min_soc <= max_soc <= 1")
        if b.max_charge_power < 0 or b.max_discharge_power < 0:
            raise PlanError("battery.max_charge_power: battery power limits must be >= 0")
        for name in ("charge_efficiency", "discharge_efficiency"):
            if not (0 < getattr(b, name) <= 1):
                raise PlanError(f"battery.{name}: must be in (0, 1]")
        if (b.day_end_h is None) != (b.day_end_energy is None):
            raise PlanError("battery.day_end_h: day_end_h and day_end_energy go together")
        if b.day_end_h is not None and b.day_end_energy is not None and not (
                b.day_end_h > 0 and math.isfinite(b.day_end_h)
                and math.isfinite(b.day_end_energy) and b.day_end_energy >= 0):
            raise PlanError("battery.day_end_h: must be > 0 h with day_end_energy >= 0 kWh")


# A kWh short of the billing day's starting charge costs this many times the dearest
# import price plus the demand charge of a kWh bought within one slot (demand_charge /
# slot_hours), through the charging losses: more than buying it back at any hour on top
# of any peak, so the plan meets the condition whenever it can.
_DAY_END_SHORT_FACTOR = 2.0

_BANNER_LOCK = threading.Lock()
_banner_shown = False


def _new_highs(time_limit: float) -> highspy.Highs:
    """A fresh, silent HiGHS solver whose time limit counts from now.

    Why fresh: HiGHS compares `time_limit` with the object's total run time over all its
    solves, so a reused object fails every plan once a few seconds of solving have
    accumulated (a daemon re-planning every few minutes died after about a day).
    Why the redirect: since highspy 1.12 the first solver of a process prints its banner on
    stdout from C++ while it is constructed, before any option can silence it; that would
    corrupt `--json` output and the daemon's stdout. Only the first construction prints, so
    only that one sends file descriptor 1 to stderr (the log) for its duration.
    """
    global _banner_shown
    with _BANNER_LOCK:
        if _banner_shown:
            highs = highspy.Highs()
        else:
            sys.stdout.flush()
            saved = os.dup(1)
            try:
                os.dup2(2, 1)
                highs = highspy.Highs()
            finally:
                os.dup2(saved, 1)
                os.close(saved)
            _banner_shown = True
    highs.setOptionValue("output_flag", False)
    highs.setOptionValue("time_limit", float(time_limit))
    return highs


class Planner:
    """Re-usable planner: validation, model building and a fresh HiGHS solver per solve.

    Each re-plan changes the model's shape (sessions come and go, the horizon slides), so
    the LP is rebuilt rather than edited; HiGHS's dual simplex on these sparse models takes
    tens of milliseconds (see docs/planner.md for measured times), so warm starts would
    buy little and are not attempted. A solver object costs well under a millisecond.
    """

    def __init__(self, time_limit: float = 5.0) -> None:
        self.time_limit = float(time_limit)
        self.last_solve_seconds = 0.0

    def plan(self, req: PlanRequest) -> Plan:
        validate(req)
        if req.scenarios:
            return self._plan_scenarios(req)
        return self._two_stage([req], lambda built: (built[0][0], [0]), 0)

    def _plan_scenarios(self, req: PlanRequest) -> Plan:
        """One LP over all the scenarios (see `Scenario`), in the same two stages as one
        plan: the reserve's stage, when due, holds each scenario's own first-stage peak."""
        reqs = [replace(req, sessions=[*req.sessions, *sc.sessions],
                        chargers=[*req.chargers, *sc.chargers], scenarios=())
                for sc in req.scenarios]
        for r in reqs:
            validate(r)
        total = sum(sc.weight for sc in req.scenarios)
        weights = [sc.weight / total for sc in req.scenarios]
        real = [s.session_id for s in req.sessions]
        k = max(range(len(weights)), key=lambda i: weights[i])  # first of the most probable
        return self._two_stage(reqs, lambda built: _joint(built, weights, real), k)

    def _two_stage(self, reqs: Sequence[PlanRequest],
                   combine: Callable[[list[tuple[_Model, _Layout]]], tuple[_Model, list[int]]],
                   k: int) -> Plan:
        """Build a model per request, `combine` them into the one LP to solve (it returns
        that and each part's column offset in it), solve, and return the plan of part k.

        Second stage, when the first one's optimum leaves a battery reserve due in any
        part: solve again holding the reserve, but each part within the peak the first
        stage found worth paying for. Refilling a reserve is never a reason to raise the
        peak (the LP would otherwise spread a refill over many slots at a small peak
        increase each and call it cheap); only real sessions may raise it. The second
        stage's build counts as build time, not solve time."""
        t0 = time.perf_counter()
        built = [_build(r) for r in reqs]
        m, offsets = combine(built)
        t1 = time.perf_counter()
        status, x, obj = m.solve(_new_highs(self.time_limit))
        t2 = time.perf_counter()
        if status == "Optimal" and any(lay.reserve_active for _m, lay in built):
            ta = time.perf_counter()
            built = [_build(r, reserve=True, peak_limit=float(x[off + lay.peak]))
                     for r, (_m, lay), off in zip(reqs, built, offsets, strict=True)]
            m, offsets = combine(built)
            tb = time.perf_counter()
            status, x, obj = m.solve(_new_highs(self.time_limit))
            t1 += tb - ta
            t2 = time.perf_counter()
        self.last_solve_seconds = t2 - t1
        if status != "Optimal":
            raise PlanError(f"planner: HiGHS returned {status}")
        part, lay = built[k]
        xk = x[offsets[k]:offsets[k] + len(part.lo)]
        return _extract(reqs[k], lay, xk, obj, status, t2 - t1, t1 - t0)


def _joint(built: Sequence[tuple[_Model, _Layout]], weights: Sequence[float],
           shared_sessions: Sequence[str]) -> tuple[_Model, list[int]]:
    """The scenarios' models side by side (block diagonal, costs weighted), with the
    decisions of the first billing slot equal in all of them: import, export, overload,
    curtailment, battery and the shared (real) sessions' power in its sub-intervals.
    Returns the joint model and each scenario's column offset in it."""
    m = _Model()
    offsets: list[int] = []
    for (part, _lay), w in zip(built, weights, strict=True):
        off, base = len(m.lo), len(m.index)
        offsets.append(off)
        m.lo.extend(part.lo)
        m.hi.extend(part.hi)
        m.cost.extend(c * w for c in part.cost)
        m.index.extend(i + off for i in part.index)
        m.value.extend(part.value)
        m.starts.extend(st + base for st in part.starts[1:])
        m.row_lo.extend(part.row_lo)
        m.row_hi.extend(part.row_hi)
    lay0 = built[0][1]
    first = [t for t in range(len(lay0.dt)) if lay0.slot_of[t] == 0]

    def shared(lay: _Layout) -> list[int]:
        cols: list[int] = []
        for t in first:
            cols += [lay.imp[t], lay.exp[t], lay.over[t], lay.curtail[t]]
            if lay.bc:
                cols += [lay.bc[t], lay.bd[t]]
            for sid in shared_sessions:
                for per in (lay.charge[sid], lay.v2g[sid]):
                    if t in per:
                        cols.append(per[t])
        return cols

    ref = shared(lay0)
    for (_part, lay), off in zip(built[1:], offsets[1:], strict=True):
        # Scenarios differ only in sessions on the slot grid, so their sub-intervals are
        # the same; anything else is a caller's error, not a plan.
        if len(lay.dt) < len(first) or not np.allclose(lay.dt[:len(first)], lay0.dt[:len(first)]) \
                or bool(lay.bc) != bool(lay0.bc):
            raise PlanError("scenarios: their first slots differ (sessions off the slot grid)")
        cols = shared(lay)
        if len(cols) != len(ref):
            raise PlanError("scenarios: their first slots differ (sessions off the slot grid)")
        for a, b in zip(ref, cols, strict=True):
            m.row([a, b + off], [1.0, -1.0], 0.0, 0.0)
    return m, offsets


def plan(req: PlanRequest) -> Plan:
    """One-shot convenience: validate, build, solve."""
    return Planner().plan(req)


@dataclass
class _Layout:
    dt: np.ndarray
    starts: np.ndarray
    imp: list[int]
    exp: list[int]
    over: list[int]
    bc: list[int]
    bd: list[int]
    benergy: list[int]
    peak: int
    charge: dict[str, dict[int, int]]
    v2g: dict[str, dict[int, int]]
    unmet: dict[str, int]
    present: dict[str, np.ndarray]
    peak_cap: np.ndarray
    slot_of: np.ndarray
    reserve_active: bool = False  # a second, reserve-holding stage is due
    curtail: list[int] = field(default_factory=list)


def _grid(req: PlanRequest) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sub-intervals: billing slots split at every session arrival and departure inside
    them, so a session is either connected for a whole sub-interval or not at all and the
    planned powers hold at every instant, not only on a slot's average."""
    n, sh = req.slots, req.slot_hours
    dt = np.full(n, sh)
    if req.first_slot_hours is not None:
        dt[0] = req.first_slot_hours
    slot_ends = np.cumsum(dt)
    points = set(np.concatenate([[0.0], slot_ends]).round(9).tolist())
    horizon = float(slot_ends[-1])
    for s in req.sessions:
        for x in (s.arrival_h, s.departure_h):
            if 0.0 < x < horizon:
                points.add(round(float(x), 9))
    boundaries = set(slot_ends.round(9).tolist())
    edges = [0.0]
    for x in sorted(points)[1:]:
        # An arrival within a second of another edge would only add a sliver column.
        if x - edges[-1] < 1.0 / 3600:
            if x in boundaries:
                edges[-1] = x
            continue
        edges.append(x)
    edges_arr = np.array(edges)
    starts, ends = edges_arr[:-1], edges_arr[1:]
    slot_of = np.minimum(np.searchsorted(slot_ends, starts + 1e-9, side="right"), n - 1)
    return starts, ends - starts, slot_of


# Default chance per hour that an arrival the plan cannot see needs a kWh missing from the
# reserve to hold the peak: one such surprise every two days. A prior, not a fit to a day
# (see docs/planner.md for the sensitivity); stations set `BatterySpec.reserve_value`.
RESERVE_RATE = 1.0 / 48.0


def reserve_value(demand_charge: float, slot_hours: float,
                  rate: float = RESERVE_RATE) -> float:
    """EUR per kWh per hour the battery is below its reserve. One kWh discharged within a
    billing slot lowers that slot's average import by 1/slot_h kW, worth demand_charge /
    slot_h; a kWh missing from the reserve loses that with probability `rate` per hour.
    High enough that short price spreads do not empty the battery, low enough that a wide
    spread may still borrow from it (no demand charge: no reserve)."""
    if demand_charge <= 0 or slot_hours <= 0:
        return 0.0
    return rate * demand_charge / slot_hours


def _build(req: PlanRequest, reserve: bool = False,
           peak_limit: float | None = None) -> tuple[_Model, _Layout]:
    nslots = req.slots
    sh = req.slot_hours
    starts, dt, slot_of = _grid(req)
    n = len(dt)
    ends = starts + dt
    price_imp = _series(req, "import_price", req.import_price, nslots)[slot_of]
    price_exp = _series(req, "export_price", req.export_price, nslots)[slot_of]
    pv = np.maximum(_series(req, "pv_power", req.pv_power, nslots), 0.0)[slot_of]
    base = _series(req, "base_load", req.base_load, nslots)[slot_of]
    ci = _series(req, "carbon_intensity", req.carbon_intensity, nslots)[slot_of]
    carbon = req.carbon_price * ci * 1e-6  # EUR/t * g/kWh -> EUR/kWh
    slot_cap = np.full(nslots, req.grid_capacity)
    if req.import_caps is not None:
        for t, c in enumerate(req.import_caps):
            if c is not None:
                slot_cap[t] = min(slot_cap[t], max(0.0, float(c)))
    cap = slot_cap[slot_of]
    exp_cap = req.export_capacity if req.export_capacity is not None else req.grid_capacity
    penalty = req.unmet_penalty
    if penalty is None:
        # Must outweigh any saving from not delivering a kWh: its price, its carbon and the
        # demand charge it could add (one kWh in one slot raises the peak by 1/slot_h kW).
        worst = float(np.max(price_imp + carbon, initial=0.0)) + req.demand_charge / sh
        penalty = 10.0 * max(1.0, worst)
    overload_penalty = 10.0 * penalty

    m = _Model()
    inf = highspy.kHighsInf
    imp = [m.col(0.0, cap[t] * dt[t], price_imp[t] + carbon[t]) for t in range(n)]
    exp = [m.col(0.0, exp_cap * dt[t], -price_exp[t]) for t in range(n)]
    # Overload: import beyond the cap, only when base load alone cannot be covered; keeps
    # the LP feasible on a bad forecast instead of failing the whole plan.
    over = [m.col(0.0, inf, overload_penalty) for t in range(n)]
    curtail = [m.col(0.0, pv[t] * dt[t]) for t in range(n)]
    peak_lo = max(0.0, req.peak_so_far, req.peak_floor)
    # A tiny tolerance: the first stage's peak must stay feasible after rounding.
    peak_hi = inf if peak_limit is None else max(peak_lo, peak_limit * (1 + 1e-9) + 1e-6)
    peak = m.col(peak_lo, peak_hi, req.demand_charge)

    b = req.battery
    bc: list[int] = []
    bd: list[int] = []
    benergy: list[int] = []
    reserve_active = False
    if b is not None and b.available:
        wear = b.degradation_cost
        e_min, e_max = b.min_soc * b.capacity, b.max_soc * b.capacity
        e_now = min(max(b.energy, 0.0), b.capacity)
        # When the battery starts outside its window it may only move toward it.
        lo_bound, hi_bound = min(e_min, e_now), max(e_max, e_now)
        e_end = e_now if b.end_energy is None else b.end_energy
        # Never ask for more than charging flat out could reach: the plan must solve.
        reachable = e_now + b.max_charge_power * b.charge_efficiency * float(dt.sum())
        e_end = min(max(e_end, lo_bound), hi_bound, reachable)
        prev = None
        for t in range(n):
            # Ties: store early and discharge late, keeping energy in hand for arrivals the
            # planner cannot see yet.
            bc.append(m.col(0.0, b.max_charge_power * dt[t], wear + _EARLY_EPS * (1 + starts[t] / sh)))
            bd.append(m.col(0.0, b.max_discharge_power * dt[t], wear + _EARLY_EPS * (1 + (ends[-1] - starts[t]) / sh)))
            e = m.col(lo_bound, hi_bound)
            benergy.append(e)
            # e_t - e_{t-1} - eta_c*bc + bd/eta_d = 0
            cols = [e, bc[t], bd[t]]
            vals = [1.0, -b.charge_efficiency, 1.0 / b.discharge_efficiency]
            rhs = 0.0
            if prev is None:
                rhs = e_now
            else:
                cols.append(prev)
                vals.append(-1.0)
            m.row(cols, vals, rhs, rhs)
            prev = e
        if b.end_value is None:
            m.row([benergy[-1]], [1.0], e_end, inf)
        else:
            short = m.col(0.0, inf, b.end_value)
            m.row([benergy[-1], short], [1.0, 1.0], e_end, inf)
        if b.day_end_h is not None and b.day_end_energy is not None \
                and b.day_end_h < float(ends[-1]) - 1e-9:
            # The sub-interval ending at the billing day's end (slot edges are on it).
            k = int(np.searchsorted(ends, b.day_end_h + 1e-9)) - 1
            if k >= 0:
                reach = e_now + b.max_charge_power * b.charge_efficiency * float(dt[:k + 1].sum())
                need = min(max(b.day_end_energy, lo_bound), hi_bound, reach)
                dear = _DAY_END_SHORT_FACTOR * (float(np.max(price_imp)) + req.demand_charge / sh) \
                    / b.charge_efficiency
                short = m.col(0.0, inf, dear)
                m.row([benergy[k], short], [1.0, 1.0], need, inf)
        target = min(max(b.reserve_energy, 0.0), e_max)
        value = reserve_value(req.demand_charge, sh) if b.reserve_value is None \
            else b.reserve_value
        reserve_active = target > e_min and value > 0
        if reserve and reserve_active:
            horizon_end = float(ends[-1])
            for t in range(n):
                # No more than the battery could still discharge before the horizon (the
                # billing period) ends: a reserve it could not use is only stored energy.
                level = min(target, e_min + b.max_discharge_power * (horizon_end - ends[t])
                            / b.discharge_efficiency)
                if level <= e_min:
                    continue
                # e_t + short_t >= level; each kWh short costs `value` per hour.
                short_t = m.col(0.0, level, value * dt[t])
                m.row([benergy[t], short_t], [1.0, 1.0], level, inf)

    chargers = {c.id: c.max_power for c in req.chargers}
    charge: dict[str, dict[int, int]] = {}
    v2g: dict[str, dict[int, int]] = {}
    unmet: dict[str, int] = {}
    present_by: dict[str, np.ndarray] = {}
    per_slot_ev: list[list[tuple[int, float]]] = [[] for _ in range(n)]
    per_charger: dict[tuple[str, int], list[int]] = {}
    eta_c, eta_v = req.charging_efficiency, req.v2g_efficiency
    for s in req.sessions:
        present = np.clip(np.minimum(ends, s.departure_h) - np.maximum(starts, s.arrival_h), 0, None)
        present_by[s.session_id] = present
        pmax = min(s.max_power, chargers[s.charger_id])
        slots = [t for t in range(n) if present[t] > 1e-9]
        # Urgency: how far into its own stay each slot is (0 at its first slot, 1 at its
        # departure), so a tie between two EVs in one slot goes to the one leaving sooner.
        first_h = max(starts[slots[0]], s.arrival_h) if slots else 0.0
        window = max(s.departure_h - first_h, sh)
        charge[s.session_id] = {}
        v2g[s.session_id] = {}
        horizon_end = ends[-1]
        # A departure beyond the horizon: require only what later slots could not deliver.
        target = s.energy_needed
        if s.departure_h > horizon_end:
            target = max(0.0, target - eta_c * pmax * (s.departure_h - max(horizon_end, s.arrival_h)))
        u = m.col(0.0, inf, penalty)
        unmet[s.session_id] = u
        delivered_cols: list[int] = []
        delivered_vals: list[float] = []
        prev_e: int | None = None
        for t in slots:
            c = m.col(0.0, pmax * present[t], _EARLY_EPS * (1 + starts[t] / sh)
                      + _URGENT_EPS * max(0.0, starts[t] - first_h) / window)
            charge[s.session_id][t] = c
            per_slot_ev[t].append((c, -1.0))
            per_charger.setdefault((s.charger_id, t), []).append(c)
            delivered_cols.append(c)
            delivered_vals.append(eta_c)
            if s.v2g and s.v2g_max_power > 0:
                d = m.col(0.0, min(s.v2g_max_power, chargers[s.charger_id]) * present[t])
                v2g[s.session_id][t] = d
                per_slot_ev[t].append((d, 1.0))
                per_charger[(s.charger_id, t)].append(d)
                # Running energy (kWh since now) stays within [-(energy above v2gMinSoc),
                # energy needed]: a state variable per slot keeps the matrix sparse.
                e = m.col(-s.v2g_energy, s.energy_needed)
                cols, vals = [e, c, d], [1.0, -eta_c, 1.0 / eta_v]
                if prev_e is not None:
                    cols.append(prev_e)
                    vals.append(-1.0)
                m.row(cols, vals, 0.0, 0.0)
                prev_e = e
        if prev_e is not None:
            m.row([prev_e, u], [1.0, 1.0], target, inf)
        elif delivered_cols:
            # delivered + unmet >= target; delivered <= energy needed (the EV stops when full)
            m.row(delivered_cols + [u], delivered_vals + [1.0], target, inf)
            m.row(delivered_cols, delivered_vals, -inf, s.energy_needed + s.extra_energy)
            if s.extra_energy > 0 and s.extra_value > 0:
                # Delivered energy is worth extra_value a kWh (extra <= delivered): the
                # default part is required anyway, so only charging beyond it is a choice.
                extra = m.col(0.0, s.energy_needed + s.extra_energy, -s.extra_value)
                m.row(delivered_cols + [extra], delivered_vals + [-1.0], 0.0, inf)
        else:
            m.row([u], [1.0], target, inf)

    for (cid, t), cols in per_charger.items():
        m.row(cols, [1.0] * len(cols), -inf, chargers[cid] * dt[t])

    in_slot: dict[int, list[int]] = {}
    for t in range(n):
        in_slot.setdefault(int(slot_of[t]), []).append(t)
    for t in range(n):
        cols = [imp[t], exp[t], over[t], curtail[t]]
        vals = [1.0, -1.0, 1.0, -1.0]
        if bc:
            cols += [bd[t], bc[t]]
            vals += [1.0, -1.0]
        for c, v in per_slot_ev[t]:
            cols.append(c)
            vals.append(v)
        rhs = (base[t] - pv[t]) * dt[t]
        m.row(cols, vals, rhs, rhs)
    for k, subs in in_slot.items():
        # Demand: the slot's 15-minute average import (including what the running slot
        # already imported before this plan) stays under the peak.
        already = req.imported_in_first_slot if k == 0 else 0.0
        cols = [imp[t] for t in subs] + [over[t] for t in subs] + [peak]
        vals = [1.0 / sh] * (2 * len(subs)) + [-1.0]
        m.row(cols, vals, -inf, -already / sh)

    layout = _Layout(dt, starts, imp, exp, over, bc, bd, benergy, peak, charge, v2g, unmet,
                     present_by, cap, slot_of, reserve_active, curtail)
    return m, layout


def _extract(req: PlanRequest, lay: _Layout, x: np.ndarray, obj: float, status: str,
             solve_s: float, build_s: float) -> Plan:
    n = len(lay.dt)
    dt = lay.dt
    imp = x[lay.imp] - x[lay.exp] + x[lay.over]
    grid = imp / dt
    peak = float(x[lay.peak])
    if lay.bc:
        battery = (x[lay.bd] - x[lay.bc]) / dt
        benergy = x[lay.benergy]
    else:
        battery = np.zeros(n)
        benergy = np.zeros(0)
    sessions: dict[str, np.ndarray] = {}
    for sid, cols in lay.charge.items():
        p = np.zeros(n)
        present = lay.present[sid]
        for t, c in cols.items():
            p[t] = x[c] / present[t]
        for t, d in lay.v2g[sid].items():
            p[t] -= x[d] / present[t]
        # Tiny LP noise is not a command.
        p[np.abs(p) < 1e-6] = 0.0
        sessions[sid] = p
    unmet = {sid: float(max(0.0, x[c])) for sid, c in lay.unmet.items()}
    # The allocator may import up to the planned peak in every sub-interval: it costs no
    # extra demand charge and leaves room for forecast errors; above it only where the plan
    # itself imports more (a burst inside a slot whose average stays at the peak). Caps and
    # capacity still bind.
    import_cap = np.minimum(lay.peak_cap, np.maximum(peak, grid))
    return Plan(
        slot_starts_h=lay.starts.copy(),
        slot_hours=dt.copy(),
        grid_power=grid,
        import_cap=import_cap,
        battery_power=battery,
        session_power=sessions,
        unmet=unmet,
        peak=peak,
        objective=obj,
        status=status,
        solve_seconds=solve_s,
        build_seconds=build_s,
        battery_energy=benergy,
        peak_cap=lay.peak_cap.copy(),
        billing_hours=req.slot_hours,
        slot_index=lay.slot_of.copy(),
        session_present={sid: pr > 1e-9 for sid, pr in lay.present.items()},
    )


def apply_plan(request: Mapping[str, Any], plan: Plan, hours: float, *,
               interval_import_kwh: float | None = None,
               interval_remaining_h: float | None = None,
               window_h: float = 0.0) -> dict[str, Any]:
    """Turn the plan's slot at `hours` into an allocator request (the DESIGN.md contract).

    The allocator stays the safety authority: the plan only narrows what it may hand out.
    - each planned session gets `powerCap` = its slot target (0 pauses it, never below 0:
      V2G discharge is commanded separately, see `v2g_setpoints`);
    - sessions with a positive target get the highest priority, so when the station is
      short of power the planned charging is served first;
    - the slot's import cap replaces gridCapacity when it is lower. The demand charge is on
      the 15-minute average, so when the meter's import so far in the running interval
      (`interval_import_kwh`) and the time left in it (`interval_remaining_h`) are given,
      the cap is what keeps that average at the planned peak: an EV arriving mid-slot may
      draw above the average for the part of the slot it is there;
    - the battery block is narrowed to the planned direction: a discharge setpoint caps
      `maxDischargePower` (and forbids charging), a charge setpoint caps `maxChargePower`;
      the plan's power is the block's `setpoint`, which rule 5 follows (allocator/battery.py:
      charging from the grid in the room the EVs leave, discharging up to the net load).
    Sessions the plan does not know (arrived since) pass through unchanged.
    With `window_h` > 0 (a control step that long), every target is the plan's time
    average over [hours, hours + window_h] instead of its value at `hours`.
    """
    g = guidance_at(plan, hours, window_h)
    out = dict(request)
    out["gridCapacity"] = min(float(request["gridCapacity"]),
                              g.grid_cap(interval_import_kwh, interval_remaining_h))
    sessions = []
    for s in request.get("sessions", []):
        s2 = dict(s)
        p = g.session_cap(s["sessionId"])
        if p is not None:
            s2["powerCap"] = min(float(s.get("powerCap", p)), p) if "powerCap" in s else p
            s2["priority"] = 1 if p > 0 else 0
        sessions.append(s2)
    out["sessions"] = sessions
    batt = request.get("battery")
    if batt is not None:
        charge, discharge = g.battery_limits(float(batt["maxChargePower"]),
                                             float(batt["maxDischargePower"]))
        out["battery"] = {**batt, "maxChargePower": charge, "maxDischargePower": discharge,
                          "setpoint": g.battery_kw}
    return out


def v2g_setpoints(plan: Plan, hours: float, window_h: float = 0.0) -> dict[str, float]:
    """Sessions the plan discharges at `hours` (averaged over `window_h` if > 0):
    sessionId -> kW (> 0)."""
    out = {}
    for sid, p in plan.session_power.items():
        kw = plan.mean_over(np.maximum(-p, 0.0), hours, window_h,
                            plan.session_present.get(sid))
        if kw > 1e-9:
            out[sid] = kw
    return out
