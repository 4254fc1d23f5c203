"""The savings ledger in the daemon: every 15-minute interval from the station's own meters.

Fed once per control cycle (`observe(decision)`: a few additions), it closes an interval when
the wall clock passes its end and then:
- imported/exported kWh from the grid meter's energy counters (the difference across the
  interval, the counter at its start being the last reading before it); when a counter is
  missing at either end, goes backwards or jumps implausibly, from the integrated power;
- prices the interval with the tariff in force (agent/store/signals.py, else `[tariff]`), adds the
  CO2, the running peak and each session's kWh (charger counters) to today's
  `SavingsLedger` (agent/energy/savings.py) and stores it (`ledger` table, policy "actual");
- steps the counterfactual (`Counterfactual`, policy "uncontrolled") and stores it too;
- teaches the PV and base-load forecasts (agent/energy/planning.py) the interval's averages;
- emits a `savings` message (15min), and at midnight UTC one for the whole day, whose cost
  includes refilling the battery when it ends the day below its energy at the day's start
  (`refillEur`, `savings.refill_cost`: the replay's definition; no credit for ending above),
  priced in a worker thread and emitted by a later cycle (agent/energy/day_close.py).
Days are UTC days; the demand charge is on the day's highest interval (the `ledger` rows of
one `period_start`). A restart the same day continues the stored rows.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from agent.config.settings import AgentSettings
from agent.energy.day_close import REFILL_TIME_LIMIT_S, SETTLE_WAIT_S, DayClose, RefillWorker
from agent.energy.planning import SLOT, SLOT_H, Forecasts, slot_start
from agent.energy.savings import (
    Interval,
    SavingsLedger,
    refill_bound,
    refill_cost,
    savings,
    store,
)
from agent.energy.tariffs import prices_at
from agent.model.clock import iso

if TYPE_CHECKING:
    import sqlite_utils

    from agent.control.decision import Decision
    from agent.store.signals import Signals

log = logging.getLogger(__name__)

Emit = Callable[[str, dict], None]
# A sample older than this is not integrated across (the agent was stalled or stopped).
MAX_GAP_S = 5.0


@dataclass
class _Acc:
    """One interval being measured."""

    start: datetime
    import_int: float = 0.0  # kWh integrated from the meter's power
    export_int: float = 0.0
    covered_h: float = 0.0  # hours the integration covers
    counter_start: tuple[float, float] | None = None  # (import, export) before the start
    counter_end: tuple[float, float] | None = None
    counters_ok: bool = True
    base_kwh: float = 0.0
    pv_kwh: float = 0.0
    battery_discharge_kwh: float = 0.0
    battery_charge_kwh: float = 0.0
    session_kwh: dict[str, float] = field(default_factory=dict)
    soc_pct: float | None = None  # last fresh BMS reading
    cap_kw: float | None = None  # lowest import cap in force (grid capacity or DR cap)


@dataclass
class _Shadow:
    charger_id: str
    idx: int
    vehicle_max_kw: float
    target_kwh: float  # what it is expected to take (known target or default) ...
    delivered_kwh: float = 0.0  # ... and what the counterfactual has given it so far
    actual_kwh: float = 0.0
    ended: bool = False


class Counterfactual:
    """What the station would have imported without sems-edge, interval by interval: each EV
    at the most it can from arrival, shared fairly within the grid capacity by the same
    allocation rules (`allocator.allocate_reference`), no battery, no V2G, no price
    awareness; base load and PV as measured.

    Live, the final energy of a session is unknown until it leaves, so the counterfactual
    charges each EV towards its expected energy (its target, or `planner.default_energy_kwh`)
    and never below what the session actually took; once a session ends its target becomes
    what it really took. Energy given in the counterfactual to an EV that then left with less
    stays counted (the published baseline is not revised afterwards)."""

    def __init__(self, settings: AgentSettings) -> None:
        self.s = settings
        self.sessions: dict[str, _Shadow] = {}

    def session(self, sid: str, charger_id: str, idx: int, vmax: float, target: float) -> None:
        if sid not in self.sessions:
            self.sessions[sid] = _Shadow(charger_id, idx, vmax, target)

    def step(self, base_kw: float, pv_kw: float, actual_kwh: dict[str, float],
             live: set[str]) -> dict[str, float]:
        """One interval (base load and PV as averages): kWh given to each session."""
        from allocator import allocate_reference

        for sid, sh in self.sessions.items():
            sh.actual_kwh += actual_kwh.get(sid, 0.0)
            if sid not in live:
                sh.ended = True
                sh.target_kwh = sh.actual_kwh
        want = []
        for sid, sh in self.sessions.items():
            remaining = max(sh.target_kwh, sh.actual_kwh) - sh.delivered_kwh
            if remaining > 1e-6:
                want.append((sid, sh, min(sh.vehicle_max_kw, remaining / SLOT_H)))
        given: dict[str, float] = {}
        if want:
            st = self.s.station
            idx, connectors = _connector_slots(want, {c.id: c.connectors for c in st.chargers})
            result = allocate_reference({
                "gridCapacity": st.grid_capacity_kw,
                "baseLoad": max(0.0, base_kw),
                "pvPower": max(0.0, pv_kw),
                "chargers": [{"id": c.id, "maxPower": c.max_power_kw,
                              "connectors": connectors[c.id]} for c in st.chargers],
                "sessions": [{"sessionId": sid,
                              "connectorId": {"chargerId": sh.charger_id, "idx": idx[sid]},
                              "vehicleMaxPower": kw} for sid, sh, kw in want],
            })  # fmt: skip
            for sid, sh, _ in want:
                kwh = result["allocations"][sid] * SLOT_H
                sh.delivered_kwh += kwh
                given[sid] = kwh
        for sid in [s for s, sh in self.sessions.items() if sh.ended]:
            sh = self.sessions[sid]
            if sh.delivered_kwh >= sh.target_kwh - 1e-6:
                del self.sessions[sid]
        return given


def _connector_slots(want: list[tuple[str, _Shadow, float]], configured: dict[str, int],
                     ) -> tuple[dict[str, int], dict[str, int]]:
    """Connector index of each counterfactual session, and connectors per charger.

    Without sems-edge an EV would charge slower, so its counterfactual session can still
    be open when the real EV has left and the next one is plugged into the same connector
    (back-to-back sessions). Both then charge in the counterfactual: the one whose real EV
    left moves to a connector beyond the charger's own, sharing the charger's power as a
    second EV on it would. (Reusing the index made the allocator refuse the request:
    "connector DC1#2 is already used".)"""
    idx: dict[str, int] = {}
    taken: dict[tuple[str, int], str] = {}
    # Live sessions keep their real connector; ended ones yield it.
    for sid, sh, _ in sorted(want, key=lambda w: w[1].ended):
        i = sh.idx
        while (sh.charger_id, i) in taken:
            i = max(configured.get(sh.charger_id, 1), i) + 1
        taken[(sh.charger_id, i)] = sid
        idx[sid] = i
    connectors = dict(configured)
    for (cid, i) in taken:
        connectors[cid] = max(connectors.get(cid, 1), i)
    return idx, connectors


class LedgerRecorder:
    def __init__(
        self,
        settings: AgentSettings,
        db: sqlite_utils.Database,
        signals: Signals | None = None,
        forecasts: Forecasts | None = None,
        emit: Emit | None = None,
        expected_kwh: Callable[[str], float | None] | None = None,
    ) -> None:
        self.s = settings
        self.db = db
        self.signals = signals
        self.forecasts = forecasts
        self.emit = emit
        self.expected_kwh = expected_kwh
        self.counterfactual = Counterfactual(settings)
        self.day: datetime | None = None  # UTC midnight of the ledgers below
        self.actual = self._new_ledger()
        self.baseline = self._new_ledger()
        self._acc: _Acc | None = None
        self._last_ts: datetime | None = None
        self._last_counter: tuple[float, float] | None = None
        self._last_counter_ts: datetime | None = None
        self._session_energy: dict[str, float] = {}
        self.intervals_closed = 0
        self._day_pv_kwh = 0.0
        # Battery SoC (%) when the day began (the last reading of the day before, else the
        # day's first): the planner hands the battery back at least this full at midnight.
        self._day_start_soc: float | None = None
        self._last_soc: float | None = None
        # The day closed at midnight whose message waits for its refill's pricing.
        self._closing: DayClose | None = None
        self._refill_worker = RefillWorker()
        if settings.station.battery is not None:
            self._refill_worker.start()  # idle until a day ends short (day_close.py)

    def _new_ledger(self) -> SavingsLedger:
        return SavingsLedger(self.s.tariff.demand_charge_eur_kw, SLOT_H)

    # --- every cycle ----------------------------------------------------------------------

    def observe(self, decision: Decision) -> None:
        if self._closing is not None:
            self._settle(wait=False)
        snap = decision.snapshot
        ts = snap.ts
        if self._acc is None:
            self._open(slot_start(ts))
        acc = self._acc
        assert acc is not None
        # This sample stands for the span since the previous one; a span crossing an
        # interval's end is split at it.
        since = self._last_ts
        gap_h = (ts - since).total_seconds() / 3600.0 if since is not None else 0.0
        if since is not None and not 0 < (ts - since).total_seconds() <= MAX_GAP_S:
            since = None
        self._last_ts = ts
        imp, exp = snap.grid_import_kwh, snap.grid_export_kwh
        while ts >= acc.start + SLOT:
            end = acc.start + SLOT
            if since is not None and since < end:
                self._integrate(acc, decision, (end - since).total_seconds() / 3600.0)
                since = end
            last, last_ts = self._last_counter, self._last_counter_ts
            if imp is not None and exp is not None and last is not None and last_ts is not None:
                # The counters at the interval's end, interpolated between the readings
                # either side of it (exact at constant power).
                f = (end - last_ts) / (ts - last_ts)
                at_end = (last[0] + (imp - last[0]) * f, last[1] + (exp - last[1]) * f)
                self._counters(acc, at_end[0], at_end[1], (end - last_ts).total_seconds() / 3600)
                self._last_counter_ts = end
            else:  # no reading at the end: the counters cannot cover this interval
                acc.counters_ok = False
            self._close(acc)
            acc = self._open(end)
        if since is not None and ts > since:
            self._integrate(acc, decision, (ts - since).total_seconds() / 3600.0)
        self._context(acc, decision)
        self._counters(acc, imp, exp, gap_h)
        if imp is not None and exp is not None:
            self._last_counter_ts = ts
        for x in decision.sessions:
            prev = self._session_energy.get(x.id)
            if prev is None:
                ch = next(c for c in self.s.station.chargers if c.id == x.charger_id)
                vmax = x.max_kw(ch.max_power_kw)
                expected = self.expected_kwh(x.id) if self.expected_kwh is not None else None
                target = expected if expected is not None else self.s.planner.default_energy_kwh
                self.counterfactual.session(x.id, x.charger_id, x.connector_idx, vmax,
                                            max(target, x.energy_kwh))  # fmt: skip
                prev = x.energy_kwh  # energy before we saw it is not this interval's
            delta = x.energy_kwh - prev
            if delta > 0:
                acc.session_kwh[x.id] = acc.session_kwh.get(x.id, 0.0) + delta
            self._session_energy[x.id] = x.energy_kwh
        live = {x.id for x in decision.sessions}
        for sid in [s for s in self._session_energy if s not in live]:
            del self._session_energy[sid]
        if self._closing is not None:  # the day's pricing, once this cycle is done with
            self._closing.start(self._refill_worker)

    def _integrate(self, acc: _Acc, decision: Decision, dt_h: float) -> None:
        snap = decision.snapshot
        if snap.grid_kw is not None:
            acc.import_int += max(snap.grid_kw, 0.0) * dt_h
            acc.export_int += max(-snap.grid_kw, 0.0) * dt_h
            acc.covered_h += dt_h
            acc.base_kwh += (decision.budget.measured_base_kw or 0.0) * dt_h
            acc.pv_kwh += (snap.pv_kw or 0.0) * dt_h
        if snap.battery is not None:
            p = snap.battery.power_kw
            if p > 0:
                acc.battery_discharge_kwh += p * dt_h
            else:
                acc.battery_charge_kwh += -p * dt_h

    def _context(self, acc: _Acc, decision: Decision) -> None:
        """What `sems report` plots beside the energies: battery SoC and the import cap."""
        snap = decision.snapshot
        if snap.battery is not None:
            acc.soc_pct = snap.battery.soc
            self._last_soc = snap.battery.soc
            if self._day_start_soc is None:
                self._day_start_soc = snap.battery.soc
        cap = self.s.station.grid_capacity_kw
        if decision.power_cap_kw is not None:
            cap = min(cap, decision.power_cap_kw)
        acc.cap_kw = cap if acc.cap_kw is None else min(acc.cap_kw, cap)

    def _counters(self, acc: _Acc, imp: float | None, exp: float | None, dt_h: float) -> None:
        if imp is None or exp is None:
            return
        reading = (imp, exp)
        last = self._last_counter
        if last is not None:
            # Plausible: no counter goes back, none moves faster than twice the connection.
            limit = 2.0 * self.s.station.grid_capacity_kw * max(dt_h, MAX_GAP_S / 3600.0) + 0.01
            d_imp, d_exp = imp - last[0], exp - last[1]
            if d_imp < -1e-6 or d_exp < -1e-6 or d_imp > limit or d_exp > limit:
                acc.counters_ok = False
        self._last_counter = reading
        acc.counter_end = reading

    def _open(self, start: datetime) -> _Acc:
        day = start.replace(hour=0, minute=0)
        if self.day is None:
            self.day = day
            self._restore(day)
            self._day_start_soc = self._stored_day_start_soc(day)
        elif day != self.day:
            self._end_day()
            self.day = day
            self._day_start_soc = self._last_soc
            self.actual = self._new_ledger()
            self.baseline = self._new_ledger()
            self._day_pv_kwh = 0.0
        acc = _Acc(start)
        # The last reading before the start; none (start-up, stale meter) means the
        # counters cannot cover this interval.
        acc.counter_start = self._last_counter
        acc.counters_ok = self._last_counter is not None
        self._acc = acc
        return acc

    # --- interval close -------------------------------------------------------------------

    def measured(self, acc: _Acc) -> tuple[float, float, str]:
        """(import kWh, export kWh, source) of an interval: counters when trustworthy."""
        if acc.counters_ok and acc.counter_start is not None and acc.counter_end is not None:
            return (
                acc.counter_end[0] - acc.counter_start[0],
                acc.counter_end[1] - acc.counter_start[1],
                "counters",
            )
        return acc.import_int, acc.export_int, "integrated"

    def _prices(self, t: datetime) -> tuple[float, float, float]:
        return prices_at(self.s.tariff, self.signals, t)

    def flush(self) -> None:
        """Shutdown: the closed day's message, its refill priced (waited for, at most
        `SETTLE_WAIT_S`, else its bound), then the running interval's part so far stored (no
        message). After a restart the same day, the rest of the interval adds to the
        stored row."""
        self._settle(wait=True)
        self._refill_worker.close()
        if self._acc is not None:
            self._close(self._acc, publish=False)
            self._acc = None

    def _close(self, acc: _Acc, publish: bool = True) -> None:
        assert self.day is not None
        imp, exp, source = self.measured(acc)
        mid = acc.start + SLOT / 2
        p_imp, p_exp, carbon = self._prices(mid)
        demand = self.signals.demand_charge_eur_kw(mid) if self.signals is not None else None
        if demand is not None:
            self.actual.demand_charge = self.baseline.demand_charge = demand
        t_h = (acc.start - self.day).total_seconds() / 3600.0
        h = SLOT_H
        sessions_kw = {sid: kwh / h for sid, kwh in acc.session_kwh.items()}
        # Two samples spanning the interval: imports at the import price, exports at the
        # export price (a net average would hide an interval that did both).
        self.actual.record(t_h, h, imp / h, p_imp, p_exp, carbon, sessions_kw,
                           acc.battery_discharge_kwh / h)  # fmt: skip
        self.actual.record(t_h, h, -exp / h, p_imp, p_exp, carbon, None,
                           -acc.battery_charge_kwh / h)  # fmt: skip

        covered = acc.covered_h
        base_kw = acc.base_kwh / covered if covered > 0 else 0.0
        pv_kw = acc.pv_kwh / covered if covered > 0 else 0.0
        live = set(self._session_energy)
        given = self.counterfactual.step(base_kw, pv_kw, acc.session_kwh, live)
        frac = min(1.0, covered / h) if covered > 0 else 0.0
        # The counterfactual's base load and PV only for the part of the interval measured.
        grid_cf_kwh = (base_kw - pv_kw) * h * frac + sum(given.values())
        self.baseline.record(t_h, h, max(grid_cf_kwh, 0.0) / h, p_imp, p_exp, carbon,
                             {sid: kwh / h for sid, kwh in given.items()})  # fmt: skip
        self.baseline.record(t_h, h, min(grid_cf_kwh, 0.0) / h, p_imp, p_exp, carbon)

        day_iso = iso(self.day)
        iv = _interval(self.actual, t_h)
        bl = _interval(self.baseline, t_h)
        # After a restart mid-interval, iv holds the stored first part: PV adds to it, the
        # cap is the lower of both parts, SoC and price are this part's.
        iv.pv_kwh = (iv.pv_kwh or 0.0) + acc.pv_kwh
        if acc.soc_pct is not None:
            iv.soc_pct = acc.soc_pct
        if acc.cap_kw is not None:
            iv.import_cap_kw = acc.cap_kw if iv.import_cap_kw is None else min(iv.import_cap_kw, acc.cap_kw)
        iv.import_price_eur_kwh = p_imp
        try:
            # Only this interval's row: hours the agent did not run get no row of zeros.
            store(self.db, _only(self.actual, iv), day_iso, "actual")
            store(self.db, _only(self.baseline, bl), day_iso, "uncontrolled")
        except Exception:  # a full disk must not stop the control loop
            log.exception("ledger not stored")
        if self.forecasts is not None and covered >= h / 2:
            try:
                self.forecasts.observe(acc.start, pv_kw, base_kw)
            except Exception:
                log.exception("forecast profile not stored")
        self.intervals_closed += 1
        self._day_pv_kwh += acc.pv_kwh
        if not publish:
            return
        self._settle(wait=True)  # the day before's message first (long done by 00:15)
        self._emit({
            "period": "15min",
            "start": iso(acc.start),
            "end": iso(acc.start + SLOT),
            # The stored row's figures (after a restart mid-interval: both parts).
            "importKwh": round(iv.import_kwh, 4),
            "exportKwh": round(iv.export_kwh, 4),
            "evKwh": round(sum(iv.session_kwh.values()), 4),
            "pvKwh": round(acc.pv_kwh, 4),
            "batteryDischargeKwh": round(iv.battery_discharge_kwh, 4),
            "costEur": round(iv.energy_cost, 4),
            "baselineCostEur": round(bl.energy_cost, 4),
            "savingsEur": round(bl.energy_cost - iv.energy_cost, 4),
            "peakKw": round(iv.peak_kw, 3),
            "co2Kg": round(iv.co2_kg, 4),
        })  # fmt: skip
        log.debug("interval %s closed from %s: %.3f kWh in, %.3f out", acc.start, source, imp, exp)

    def battery_kwh(self, soc_pct: float | None) -> float | None:
        """kWh in the stationary battery at `soc_pct` (None: no battery, capacity or SoC)."""
        b = self.s.station.battery
        if b is None or b.capacity_kwh is None or soc_pct is None:
            return None
        return b.capacity_kwh * min(max(soc_pct, 0.0), 100.0) / 100.0

    def _close_day(self) -> DayClose:
        """Today's day message (its refill to come: `_price_refill`)."""
        assert self.day is not None
        a, b = self.actual, self.baseline
        cmp = savings(a, b)
        return DayClose(self.day, {
            "period": "day",
            "start": iso(self.day),
            "end": iso(self.day + timedelta(days=1)),
            "importKwh": round(a.import_kwh, 4),
            "exportKwh": round(a.export_kwh, 4),
            "evKwh": round(sum(a.session_energy().values()), 4),
            "pvKwh": round(self._day_pv_kwh, 4),
            "batteryDischargeKwh": round(sum(iv.battery_discharge_kwh for iv in a.intervals), 4),
            "costEur": cmp["cost"],  # the refill not yet in: `_settle` adds it
            "baselineCostEur": round(cmp["baselineCost"], 4),
            "savingsEur": cmp["savingsEur"],
            "peakKw": round(a.peak_kw, 3),
            "co2Kg": round(a.co2_kg, 4),
            "refillEur": None,
            "batteryStartKwh": None,
            "batteryEndKwh": None,
        }, None, None)  # fmt: skip

    def _price_refill(self, close: DayClose, end_soc_pct: float | None) -> None:
        """The day's refill when the battery ended it (at `end_soc_pct`) below its start:
        what buying the shortfall back costs at today's prices, through the losses the
        planner assumes, on top of today's metered import (`savings.refill_cost`, the
        replay's definition), handed to the worker thread. 0 when the battery ends at or
        above its start (no credit); None when either end or the battery is unknown."""
        assert self.day is not None
        bat = self.s.station.battery
        start = self.battery_kwh(self._day_start_soc)
        end = self.battery_kwh(end_soc_pct)
        if bat is None or start is None or end is None:
            return
        close.start_kwh, close.end_kwh = start, end
        close.payload["batteryStartKwh"] = round(start, 3)
        close.payload["batteryEndKwh"] = round(end, 3)
        short = start - end
        if short <= 1e-6:
            close.refill_eur = 0.0
            return
        n = round(24 / SLOT_H)
        prices = [self._prices(self.day + SLOT * k + SLOT / 2) for k in range(n)]
        imp, exp = [p[0] for p in prices], [p[1] for p in prices]
        # The day's own ledger: no longer written once the next day records into a new one.
        ledger, max_kw, grid_kw = self.actual, bat.max_charge_kw, self.s.station.grid_capacity_kw
        close.job = lambda: _refill_eur(ledger, short, imp, exp, max_charge_kw=max_kw,
                                        grid_capacity_kw=grid_kw)  # fmt: skip
        # Only if the pricing fails or is late (its efficiency needs the LP's module, which
        # the loop does not import for it: 40-350 ms when no planner loaded it).
        close.bound = lambda: refill_bound(ledger, short, imp, max_charge_kw=max_kw,
                                           charge_efficiency=_charge_efficiency())

    def _end_day(self) -> None:
        assert self.day is not None
        self._settle(wait=True)  # a day still pending goes out first
        close = self._close_day()
        try:
            self._price_refill(close, self._last_soc)
        except Exception:  # a failed account must not stop the control loop
            log.exception("battery refill not priced")
            close.start_kwh = close.end_kwh = close.refill_eur = close.job = None
            close.payload["batteryStartKwh"] = close.payload["batteryEndKwh"] = None
        self._closing = close
        self._settle(wait=False)  # nothing to price: out at once
        # Else the pricing starts as observe() returns: a worker started now would take
        # the interpreter lock from the rest of this observe() (5 ms switches measured).

    def _settle(self, wait: bool) -> None:
        """Emit the closed day's message once its refill is priced; `wait`: now, waiting
        for the pricing at most `SETTLE_WAIT_S` (else its bound is charged)."""
        close = self._closing
        if close is None:
            return
        if wait:
            close.start(self._refill_worker)
        elif not close.ready():
            return
        self._closing = None
        refill_eur = close.result(SETTLE_WAIT_S)
        msg = close.payload
        if refill_eur is not None:
            # The day's cost includes handing the battery back: savings are net of it.
            msg["costEur"] += refill_eur
            msg["savingsEur"] -= refill_eur
            self._store_refill(close.day, refill_eur)
        msg["costEur"] = round(msg["costEur"], 4)
        msg["savingsEur"] = round(msg["savingsEur"], 4)
        msg["refillEur"] = _round(refill_eur, 4)
        self._emit(msg)
        if refill_eur is not None and refill_eur > 0:
            log.info("billing day %s: battery ended %.1f kWh short of its start, refill %.2f EUR"
                     " added to the day's cost", iso(close.day),
                     (close.start_kwh or 0) - (close.end_kwh or 0), refill_eur)

    @property
    def pending_refill(self) -> Future[float] | None:
        """The closed day's refill still being priced, or None (nothing pending)."""
        close = self._closing
        return close.future if close is not None else None

    def _store_refill(self, day: datetime, eur: float) -> None:
        """The day's refill on its last recorded 'actual' row (`ledger.refill_eur`)."""
        try:
            with self.db.conn:
                self.db.execute(
                    "UPDATE ledger SET refill_eur = ? WHERE period_start = ? AND policy = 'actual'"
                    " AND interval = (SELECT MAX(interval) FROM ledger WHERE period_start = ?"
                    " AND policy = 'actual')", [eur, iso(day), iso(day)])
        except Exception:  # a full disk must not stop the control loop
            log.exception("battery refill not stored")

    def _emit(self, payload: dict) -> None:
        if self.emit is None:
            return
        try:
            self.emit("savings", payload)
        except Exception:  # the uplink must never stop the control loop
            log.exception("savings message not enqueued")

    # --- restart and readers --------------------------------------------------------------

    def _restore(self, day: datetime) -> None:
        """Continue today's stored rows after a restart (else store() would zero them)."""
        for policy, ledger in (("actual", self.actual), ("uncontrolled", self.baseline)):
            rows = self.db.execute(
                "SELECT interval, import_kwh, export_kwh, energy_cost_eur, co2_kg, peak_kw,"
                " battery_charge_kwh, battery_discharge_kwh, session_kwh, v2g_kwh, pv_kwh,"
                " soc_pct, import_cap_kw, import_price_eur_kwh FROM ledger"
                " WHERE period_start = ? AND policy = ? ORDER BY interval",
                [iso(day), policy],
            ).fetchall()
            for r in rows:
                iv = _interval(ledger, r[0] * SLOT_H)
                iv.import_kwh, iv.export_kwh, iv.energy_cost, iv.co2_kg = r[1], r[2], r[3], r[4]
                iv.peak_kw = max(iv.peak_kw, r[5])
                iv.battery_charge_kwh, iv.battery_discharge_kwh = r[6], r[7]
                iv.session_kwh, iv.v2g_kwh = json.loads(r[8]), json.loads(r[9])
                iv.pv_kwh, iv.soc_pct, iv.import_cap_kw, iv.import_price_eur_kwh = r[10:14]

    def interval_so_far(self, now: datetime) -> tuple[float, float] | None:
        """(kWh imported so far in the running interval, hours left in it), or None."""
        acc = self._acc
        if acc is None or not acc.start <= now < acc.start + SLOT:
            return None
        left_h = (acc.start + SLOT - now).total_seconds() / 3600.0
        return self.measured(acc)[0], left_h

    def _stored_day_start_soc(self, day: datetime) -> float | None:
        """After a restart: the SoC at the end of the stored day before's last interval,
        if that interval ended at midnight."""
        row = self.db.execute(
            "SELECT soc_pct FROM ledger WHERE period_start = ? AND policy = 'actual'"
            " AND interval = ? AND soc_pct IS NOT NULL",
            [iso(day - timedelta(days=1)), round(24 / SLOT_H) - 1]).fetchone()
        return float(row[0]) if row else None

    def billing_day(self, now: datetime) -> tuple[datetime, float] | None:
        """(end of today's billing day, battery SoC % when it began), or None before a
        SoC was read today: what the planner hands the battery back at."""
        if self.day is None or self._day_start_soc is None:
            return None
        return self.day + timedelta(days=1), self._day_start_soc

    def peak_so_far(self) -> float:
        """Today's highest 15-minute average import (kW): sunk for the planner."""
        return self.actual.peak_kw

    def summary(self) -> dict[str, Any]:
        cmp = savings(self.actual, self.baseline)
        return {
            "day": iso(self.day) if self.day else None,
            "intervals": self.intervals_closed,
            "importKwh": round(self.actual.import_kwh, 3),
            "peakKw": round(self.actual.peak_kw, 3),
            "costEur": round(cmp["cost"], 3),
            "baselineCostEur": round(cmp["baselineCost"], 3),
            "savingsEur": round(cmp["savingsEur"], 3),
            # The day so far carries no refill: the rest of the day may still bring the
            # battery back (the plan aims to); the day message charges what is still short.
            "batteryStartKwh": _round(self.battery_kwh(self._day_start_soc), 3),
            "batteryNowKwh": _round(self.battery_kwh(self._last_soc), 3),
        }


def _charge_efficiency() -> float:
    """What the daemon's planner assumes for the battery (its BatterySpec default)."""
    from allocator.planner import BatterySpec

    return BatterySpec.charge_efficiency


def _refill_eur(ledger: SavingsLedger, short_kwh: float, import_price: list[float],
                export_price: list[float], *, max_charge_kw: float,
                grid_capacity_kw: float) -> float:
    """The refill's LPs, in the recorder's worker thread (agent/energy/day_close.py)."""
    return refill_cost(ledger, short_kwh, import_price, export_price,
                       max_charge_kw=max_charge_kw, charge_efficiency=_charge_efficiency(),
                       grid_capacity_kw=grid_capacity_kw, time_limit_s=REFILL_TIME_LIMIT_S)


def _round(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


def _interval(ledger: SavingsLedger, t_h: float) -> Interval:
    """The ledger's interval at `t_h`, created (empty, peak carried) if needed."""
    ledger.record(t_h, 0.0, 0.0, 0.0, 0.0)  # a zero-length sample only creates it
    return ledger.intervals[int(t_h / ledger.interval_hours + 1e-9)]


def _only(ledger: SavingsLedger, iv: Interval) -> SavingsLedger:
    """A ledger holding just `iv`, for `store()` (which writes every interval it holds)."""
    one = SavingsLedger(ledger.demand_charge, ledger.interval_hours)
    one.intervals = [iv]
    return one
