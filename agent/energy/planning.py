"""The horizon planner in the daemon: what to plan from, when to re-plan, what the loop gets.

`PlannerTask.run(stop)` re-plans every `planner.replan_s` of wall time and soon after an
event: a session started or stopped (`notice`, fed by the control loop each cycle), or a
tariff, carbon forecast, power cap, vehicle schedule, maintenance window or optimisation
request arriving in `agent/store/signals.py` (polled every `planner.signal_poll_s`). The request
is built on the event loop (cheap reads, ~3 ms) and the LP built and solved in a worker
thread (`asyncio.to_thread`), so the control loop never waits for HiGHS (it shares the
interpreter lock with the thread's Python parts while they run: docs/planner.md).

Each cycle the control loop asks `guidance(now)` for the current slot (a dict lookup once
the slot is known). Without a usable plan (planner disabled, failed, timed out, or the plan
ran past its horizon) it returns None and the loop shares power plainly (fair sharing): a
planner failure is logged once, counted, and shown in `status()` for the health report.

Inputs: prices and carbon from signals (`[tariff]` defaults for hours they do not cover);
PV and base-load forecasts from the station's own 15-minute averages (`Forecasts`, learned
by the ledger recorder); active sessions with departure and energy target from the session
row (the local API) or the vehicle's schedule, else `planner.default_*`; the battery's SoC
and limits, out of dispatch during maintenance; demand-response caps per slot.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.config.settings import AgentSettings
from agent.control.v2g import CHARGING_EFFICIENCY  # charger kWh -> vehicle battery kWh
from agent.energy.foresight import Foresight, Tuning, learn_from_sessions, session_records
from agent.energy.foresight import parse_time as _parse
from agent.energy.tariffs import prices_at
from agent.model.clock import Clock
from agent.model.snapshot import BatteryState
from allocator.forecast import WeekdayProfile
from allocator.foresight import is_expected
from allocator.guidance import Guidance, Hold, guidance_at

if TYPE_CHECKING:
    import sqlite_utils

    from agent.control.decision import Decision
    from agent.control.sessions import Session
    from agent.control.v2g import V2gDispatch
    from agent.store.signals import Signals
    from allocator.planner import Plan, PlanRequest

log = logging.getLogger(__name__)

SLOT = timedelta(minutes=15)
# What an EV of unknown target is worth charging for beyond the default energy, relative
# to the horizon's mean import price: a little above it, so flat prices still charge it.
OPEN_ENDED_PRICE_FACTOR = 1.1
SLOT_H = 0.25


def slot_start(ts: datetime) -> datetime:
    """Start of the 15-minute slot containing `ts` (UTC)."""
    ts = ts.astimezone(UTC)
    return ts.replace(minute=ts.minute - ts.minute % 15, second=0, microsecond=0)


class Forecasts:
    """PV and base-load profiles learned from this station's own 15-minute averages,
    persisted in the `meta` table so a restart keeps what was learned."""

    KEY = "forecast.profiles"

    def __init__(self, db: sqlite_utils.Database | None = None) -> None:
        self.db = db
        self.pv = WeekdayProfile()
        self.base = WeekdayProfile()
        if db is not None:
            row = db.execute("SELECT value FROM meta WHERE key = ?", [self.KEY]).fetchone()
            if row is not None:
                try:
                    data = json.loads(row[0])
                    for name in ("pv", "base"):
                        prof = getattr(self, name)
                        prof.values[:] = np.array(data[name]["values"])
                        prof.seen[:] = np.array(data[name]["seen"], dtype=bool)
                except (ValueError, KeyError, TypeError) as exc:  # a damaged row: start afresh
                    log.warning("forecast profiles not restored: %s", exc)

    @property
    def learned(self) -> bool:
        return bool(self.base.seen.any())

    def observe(self, start: datetime, pv_kw: float, base_kw: float) -> None:
        """One interval's averages (kW) for the slot starting at `start`."""
        self.pv.observe(start, pv_kw)
        self.base.observe(start, base_kw)
        if self.db is not None:
            value = json.dumps(
                {
                    name: {
                        "values": np.round(getattr(self, name).values, 3).tolist(),
                        "seen": getattr(self, name).seen.astype(int).tolist(),
                    }
                    for name in ("pv", "base")
                }
            )
            with self.db.conn:
                self.db.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", [self.KEY, value]
                )


@dataclass
class PlannerStatus:
    plans: int = 0
    failures: int = 0
    last_plan_at: str | None = None
    last_solve_ms: float | None = None
    last_reason: str | None = None
    last_error: str | None = None
    active: bool = False  # a plan is guiding the control loop

    def as_dict(self) -> dict[str, Any]:
        return {
            "plans": self.plans,
            "failures": self.failures,
            "lastPlanAt": self.last_plan_at,
            "lastSolveMs": self.last_solve_ms,
            "lastReason": self.last_reason,
            "lastError": self.last_error,
            "active": self.active,
        }


@dataclass
class _Current:
    plan: Plan
    start: datetime  # wall time of the plan's hour 0
    horizon_h: float
    by_slot: dict[int, Guidance] = field(default_factory=dict)
    # Per sub-interval, the sessions the plan holds and why (allocator.held), worked out
    # with the plan, off the event loop; empty if that failed (the plan still guides).
    held: list[dict[str, Hold]] = field(default_factory=list)
    demand_charge: float = 0.0


Solve = Callable[["PlanRequest"], "Plan"]


class PlannerTask:
    def __init__(
        self,
        settings: AgentSettings,
        clock: Clock,
        db: sqlite_utils.Database,
        signals: Signals | None = None,
        forecasts: Forecasts | None = None,
        *,
        interval_so_far: Callable[[datetime], tuple[float, float] | None] | None = None,
        peak_so_far: Callable[[], float] | None = None,
        battery_available: Callable[[datetime], bool] | None = None,
        billing_day: Callable[[datetime], tuple[datetime, float] | None] | None = None,
        solve: Solve | None = None,
    ) -> None:
        self.clock = clock
        self.db = db
        self.signals = signals
        self.forecasts = forecasts or Forecasts()
        self.interval_so_far = interval_so_far
        self.peak_so_far = peak_so_far
        self.battery_available = battery_available
        # (end of the billing day, battery SoC % when it began) from the ledger, or None:
        # the plan hands the battery back at least as full at the day's end.
        self.billing_day = billing_day
        self._solve = solve
        self.status = PlannerStatus()
        self._current: _Current | None = None
        self._wake = asyncio.Event()
        self._reasons: list[str] = []
        # Monotonic times the next signal poll and periodic re-plan are due (`step`); None:
        # at once (start-up).
        self._next_poll: float | None = None
        self._next_plan: float | None = None
        self._session_ids: frozenset[str] = frozenset()
        self._sessions: tuple[Session, ...] = ()
        self.configure_station(settings)
        self._battery: BatteryState | None = None
        self._base_kw: float | None = None
        self._pv_kw: float | None = None
        self._signals_seen: str | None = None
        self._logged_failure = False
        # V2G (agent/control/v2g.py): which sessions may discharge, how much they gave back;
        # told each session's goal so the control loop can guard departure targets.
        self.v2g: V2gDispatch | None = None
        # Expected arrivals and the reserve: the same Tuning and code as the replay
        # (agent/energy/foresight.py); relearnt from the sessions table once a day (it
        # learns from whole days only).
        self.tuning = Tuning()
        self._foresight: tuple[datetime, Foresight] | None = None
        # The LP's module (highspy with it, 30-40 ms) loads now, at start-up. Left to the
        # first re-plan, its import ran on the event loop beside the first control cycles
        # and set their p99 (bench/loop.py at 2 chargers: 3.7 ms before the planner's
        # foresight, 20-24 ms with the import there). A daemon without a planner never
        # builds this task, so never loads it.
        import allocator.planner  # noqa: F401

    def configure_station(self, settings: AgentSettings) -> None:
        """At start, and when a new station configuration is swapped in: the next plan uses
        its capacity and charger ratings."""
        self.s = settings
        self._chargers = {ch.id: ch for ch in settings.station.chargers}

    # --- fed by the control loop (every cycle: cheap) ------------------------------------

    def notice(self, decision: Decision) -> None:
        """Remember the station's state for the next plan; a session change re-plans."""
        snap = decision.snapshot
        if snap.battery is not None:
            self._battery = snap.battery
        if decision.budget.measured_base_kw is not None:
            self._base_kw = decision.budget.measured_base_kw
            self._pv_kw = snap.pv_kw or 0.0
        self._sessions = decision.sessions
        ids = frozenset(s.id for s in decision.sessions)
        if ids != self._session_ids:
            started = len(ids - self._session_ids)
            stopped = len(self._session_ids - ids)
            self._session_ids = ids
            self.trigger(f"sessions +{started}/-{stopped}")

    def trigger(self, reason: str) -> None:
        self._reasons.append(reason)
        self._wake.set()

    def guidance(self, now: datetime) -> Guidance | None:
        cur = self._current
        if cur is None:
            return None
        hours = (now - cur.start).total_seconds() / 3600.0
        if hours >= cur.horizon_h:
            return None  # the plan ran out: plain fair sharing until the next one
        t = cur.plan.slot_at(hours)
        g = cur.by_slot.get(t)
        if g is None:
            g = cur.by_slot[t] = replace(
                guidance_at(cur.plan, hours), demand_charge=cur.demand_charge,
                held=cur.held[t] if t < len(cur.held) else {})
        return g

    def view(self, now: datetime, slots: int = 96) -> dict[str, Any] | None:
        """The plan guiding the loop from the slot containing `now` on, for the API and
        `sems plan` (None without a current plan)."""
        cur = self._current
        if cur is None:
            return None
        first = cur.plan.slot_at((now - cur.start).total_seconds() / 3600.0)
        return {**plan_rows(cur.plan, cur.start, first, slots), "horizonH": cur.horizon_h,
                "status": self.status.as_dict()}

    # --- the task -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self.trigger("start")
        while not stop.is_set():
            timeout = await self.step()
            await _wait_any((self._wake, stop), timeout)

    async def step(self) -> float:
        """One turn of `run`: poll the signals and re-plan when due (or triggered); the
        seconds until the next is due. A test on an injected clock calls it as `run` does."""
        p = self.s.planner
        now = self.clock.monotonic()
        if self._next_poll is None or now >= self._next_poll:
            self._next_poll = now + p.signal_poll_s
            self._poll_signals()
        if self._wake.is_set() or self._next_plan is None or now >= self._next_plan:
            reason = ", ".join(dict.fromkeys(self._reasons)) or "periodic"
            self._reasons.clear()
            self._wake.clear()
            await self.replan(reason)
            self._next_plan = self.clock.monotonic() + p.replan_s
        return max(0.0, min(self._next_plan, self._next_poll) - self.clock.monotonic())

    async def replan(self, reason: str) -> None:
        """Build the request, solve it off the event loop, install the plan (or drop it)."""
        p = self.s.planner
        try:
            request, start = self.build_request(self.clock.now())
            solve = self._solve or self._default_solver()
            # The peak floor (Tuning.peak_floor, off by default) is applied in the worker
            # thread: the first request after each relearning works it out with one LP per
            # history day (~20 ms each), too long for the event loop.
            plan, held = await asyncio.wait_for(
                asyncio.to_thread(_solve_and_explain, solve, request, start,
                                  self.foresight(start)), p.solve_timeout_s)
        except Exception as exc:  # any failure: fair sharing, never a stopped control loop
            self._current = None
            self.status.failures += 1
            self.status.active = False
            msg = "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
            self.status.last_error = msg
            if not self._logged_failure:
                log.warning("planner failed (%s); fair sharing until a plan succeeds", msg)
                self._logged_failure = True
            return
        self._current = _Current(plan, start, p.horizon_h, held=held,
                                 demand_charge=float(request.demand_charge))
        self.status.plans += 1
        self.status.active = True
        self.status.last_plan_at = start.isoformat()
        self.status.last_solve_ms = round(plan.solve_seconds * 1000.0, 2)
        self.status.last_reason = reason
        if self._logged_failure:
            log.info("planner recovered")
            self._logged_failure = False
        self.status.last_error = None

    def _default_solver(self) -> Solve:
        from allocator.planner import Planner  # highspy: only when a plan is made

        planner = Planner(time_limit=self.s.planner.solve_timeout_s)
        self._solve = planner.plan
        return planner.plan

    def _poll_signals(self) -> None:
        if self.signals is None:
            return
        try:
            rows = self.signals.conn.execute(
                "SELECT id, data FROM signals WHERE kind != 'optimization' ORDER BY id"
            ).fetchall()
        except Exception as exc:  # a broken store must not stop planning
            log.debug("signals not readable: %s", exc)
            return
        digest = hashlib.sha1(json.dumps(rows).encode()).hexdigest()
        if self._signals_seen is not None and digest != self._signals_seen:
            self.trigger("signals")
        self._signals_seen = digest
        for req in self.signals.pending_optimizations():
            self.trigger(f"optimization {req.id}")
            self.signals.mark_optimization_done(req.id)

    # --- the request ----------------------------------------------------------------------

    def build_request(self, now: datetime) -> tuple[PlanRequest, datetime]:
        from allocator.planner import BatterySpec, ChargerSpec, PlanRequest

        s = self.s
        first_start = slot_start(now)
        first_h = max(1e-3, SLOT_H - (now - first_start).total_seconds() / 3600.0)
        n = max(1, math.ceil(s.planner.horizon_h / SLOT_H))
        starts = [first_start + i * SLOT for i in range(n)]
        mids = [now + timedelta(hours=first_h / 2)] + [t + SLOT / 2 for t in starts[1:]]


        tariff = s.tariff
        priced = [prices_at(tariff, self.signals, t) for t in mids]
        imp, exp, carbon = ([p[i] for p in priced] for i in range(3))
        demand = self.signals.demand_charge_eur_kw(now) if self.signals is not None else None

        pv, base = self._forecast(starts)
        sessions = [self._session_spec(x, now) for x in self._sessions]
        st = s.station
        so_far = self.interval_so_far(now) if self.interval_so_far is not None else None
        demand_charge = demand if demand is not None else tariff.demand_charge_eur_kw
        # An EV without a known target keeps charging while power is not dear (at most
        # OPEN_ENDED_PRICE_FACTOR x the horizon's mean price) and raises no peak
        # (SessionSpec.extra_energy).
        value = OPEN_ENDED_PRICE_FACTOR * float(np.mean(imp)) if len(imp) else 0.0
        sessions = [replace(x, extra_value=value) if x.extra_energy > 0 else x
                    for x in sessions]
        foresight = self.foresight(now)
        # The forecast's day so far (since it was learnt, from whole days ending then), for
        # the intraday scaling of the expectations: as the replay counts its day file's
        # arrivals since the day's start, after learning from the days before it.
        since = self._foresight[0] if self._foresight is not None else now
        today = (since, session_records(self.db, since, now, {
            ch.id: (ch.max_power_kw, ch.connectors) for ch in st.chargers}))
        sessions, chargers, scenarios = foresight.extend(
            sessions, [ChargerSpec(ch.id, ch.max_power_kw) for ch in st.chargers],
            first_start, n, SLOT_H, first_h, today)
        request = PlanRequest(
            import_price=imp,
            export_price=exp,
            pv_power=pv,
            base_load=base,
            grid_capacity=st.grid_capacity_kw,
            chargers=chargers,
            sessions=sessions,
            battery=self._battery_spec(now, BatterySpec, foresight, demand_charge),
            carbon_intensity=carbon,
            carbon_price=tariff.carbon_price_eur_t,
            import_caps=self._caps(starts, now),
            demand_charge=demand_charge,
            peak_so_far=self.peak_so_far() if self.peak_so_far is not None else 0.0,
                first_slot_hours=first_h,
            imported_in_first_slot=so_far[0] if so_far is not None else 0.0,
            v2g_efficiency=s.v2g.efficiency,
            scenarios=scenarios,
        )
        return request, now

    def foresight(self, now: datetime) -> Foresight:
        """Expected arrivals from the station's own sessions (relearnt daily)."""
        if self._foresight is None or now - self._foresight[0] >= timedelta(days=1) \
                or now < self._foresight[0]:
            chargers = {ch.id: (ch.max_power_kw, ch.connectors) for ch in self.s.station.chargers}
            self._foresight = (now, learn_from_sessions(self.db, now, chargers, self.tuning))
        return self._foresight[1]

    def _forecast(self, starts: list[datetime]) -> tuple[list[float], list[float]]:
        f = self.forecasts
        if f.learned:
            pv = f.pv.forecast(starts[0], len(starts)).tolist()
            base = f.base.forecast(starts[0], len(starts)).tolist()
        else:  # nothing learned yet: the present persists (PV only for the running slot)
            pv = [0.0] * len(starts)
            base = [self._base_kw or self.s.station.pessimistic_base_load_kw] * len(starts)
        if self._pv_kw is not None:
            pv[0] = self._pv_kw
        if self._base_kw is not None:
            base[0] = self._base_kw
        return [max(0.0, v) for v in pv], [max(0.0, v) for v in base]

    def _caps(self, starts: list[datetime], now: datetime) -> list[float | None] | None:
        """Tightest demand-response cap overlapping each slot."""
        if self.signals is None:
            return None
        from agent.store.signals import PowerCap

        caps = []
        for (data,) in self.signals.conn.execute(
            "SELECT data FROM signals WHERE kind = 'power_cap' AND end > ?",
            [now.astimezone(UTC).isoformat()],
        ):
            caps.append(PowerCap.model_validate_json(data))
        if not caps:
            return None
        out: list[float | None] = []
        for i, t in enumerate(starts):
            lo, hi = (now if i == 0 else t), t + SLOT
            found = [c.cap_kw for c in caps if c.start < hi and c.end > lo]
            out.append(min(found) if found else None)
        return out

    def _session_spec(self, x: Session, now: datetime) -> Any:
        """Departure and target from the session row (local API), else the vehicle's
        schedule, else the defaults for unknown EVs."""
        from allocator.planner import SessionSpec

        p = self.s.planner
        ch = self._chargers[x.charger_id]
        row = self.db.execute(
            "SELECT vehicle_id, departure, energy_target_kwh FROM sessions WHERE id = ?", [x.id]
        ).fetchone()
        vehicle_id, departure, target = (row[0], _parse(row[1]), row[2]) if row else (None,) * 3
        if (departure is None or target is None) and vehicle_id and self.signals is not None:
            for sch in self.signals.vehicle_schedules(now):
                if sch.vehicle_id == vehicle_id:
                    departure = departure or sch.departure
                    target = target if target is not None else sch.energy_target_kwh
        if departure is None:
            departure = (_parse(x.started_at) or now) + timedelta(hours=p.default_dwell_h)
        open_ended = target is None
        if target is None:
            target = p.default_energy_kwh
        v2g: dict[str, Any] = {}
        taken = 0.0  # battery kWh V2G took back out of the vehicle
        if self.v2g is not None:
            self.v2g.set_goal(x.id, departure, target)
            v2g = self.v2g.plan_fields(x, ch, now, self.clock.monotonic())
            taken = self.v2g.battery_taken_kwh(x.id)
        needed = max(0.0, target - (x.energy_kwh * CHARGING_EFFICIENCY - taken))
        # Overdue (still plugged in past its departure): planned as leaving within the slot.
        # A departure still ahead is planned as it is, however near (as the replay plans it).
        dep_h = (departure - now).total_seconds() / 3600.0
        if dep_h <= 0:
            dep_h = SLOT_H
        vmax = x.max_kw(ch.max_power_kw)
        # Without a known target the default is only what the plan must deliver; the EV
        # may take as much more as it could draw by its departure, valued in build_request
        # at the horizon's mean price: it is never stopped for want of a target.
        extra = vmax * dep_h if open_ended else 0.0
        return SessionSpec(x.id, x.charger_id, dep_h, needed, vmax, extra_energy=extra, **v2g)

    def _battery_spec(self, now: datetime, spec: Any, foresight: Foresight,
                      demand_charge: float) -> Any:
        b = self.s.station.battery
        if b is None or b.capacity_kwh is None or self._battery is None:
            return None
        from allocator.planner import reserve_value
        available = self.battery_available(now) if self.battery_available is not None else True
        cap = b.capacity_kwh
        soc = min(max(self._battery.soc / 100.0, 0.0), 1.0)
        min_soc = b.min_soc / 100.0
        max_soc = max(0.95, soc)
        day = self.billing_day(now) if self.billing_day is not None else None
        day_end_h = day_end_energy = None
        if day is not None:
            day_end_h = (day[0] - now).total_seconds() / 3600.0
            day_end_energy = min(max(day[1] / 100.0, min_soc), max_soc) * cap
            if day_end_h <= 0:
                day_end_h = day_end_energy = None
        return spec(
            capacity=cap,
            energy=min(max(soc, min_soc), max_soc) * cap,
            max_charge_power=max(0.0, min(b.max_charge_kw, self._battery.max_charge_kw)),
            max_discharge_power=max(0.0, min(b.max_discharge_kw, self._battery.max_discharge_kw)),
            min_soc=min_soc,
            max_soc=max_soc,
            degradation_cost=b.degradation_cost_eur_kwh,
            available=available,
            reserve_energy=foresight.reserve_kwh(cap, min_soc, max_soc, b.max_discharge_kw),
            reserve_value=reserve_value(demand_charge, SLOT_H, foresight.tuning.reserve_rate),
            day_end_h=day_end_h,
            day_end_energy=day_end_energy,
        )


def plan_rows(plan: Plan, start: datetime, first: int = 0, slots: int | None = None) -> dict[str, Any]:
    """A plan as JSON-able rows from slot `first` on: per slot its start time, the planned
    net import, the import cap and battery setpoint (kW, > 0 discharging) and each connected
    session's target (kW, < 0 V2G)."""
    last = len(plan.slot_starts_h) if slots is None else min(len(plan.slot_starts_h), first + slots)
    rows = [{
        "start": (start + timedelta(hours=float(plan.slot_starts_h[i]))).isoformat(),
        "hours": round(float(plan.slot_hours[i]), 4),
        "gridKw": round(float(plan.grid_power[i]), 2),
        "importCapKw": round(float(plan.import_cap[i]), 2),
        "batteryKw": round(float(plan.battery_power[i]), 2),
        "sessions": {sid: round(float(p[i]), 2) for sid, p in plan.session_power.items()
                     if (sid not in plan.session_present or plan.session_present[sid][i])
                     and not is_expected(sid)},
    } for i in range(first, last)]
    return {"start": start.isoformat(), "peakKw": round(plan.peak, 2),
            "unmetKwh": {k: round(v, 3) for k, v in plan.unmet.items()
                         if v > 1e-6 and not is_expected(k)},
            "slots": rows}


def _solve_and_explain(solve: Solve, request: PlanRequest, start: datetime,
                       foresight: Foresight | None = None,
                       ) -> tuple[Plan, list[dict[str, Hold]]]:
    """The plan, and why it holds each session it holds (in the same worker thread: the
    explanation is numpy work over the plan, not for the event loop). An explanation that
    fails costs `sems status` its words, never the plan. `foresight`: its peak floor is
    applied to the request first, as the replay's (Foresight.with_peak_floor)."""
    if foresight is not None:
        request = foresight.with_peak_floor(request, start)
    plan = solve(request)
    try:
        from allocator.held import explain

        return plan, explain(request, plan, start)
    except Exception as exc:  # words for a technician must never cost the station its plan
        log.warning("why sessions are held not worked out: %s", exc)
        return plan, []


async def _wait_any(events: tuple[asyncio.Event, ...], timeout: float) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
