"""V2G on the station: which sessions discharge this cycle, how much, and what that discharge
is worth to the other EVs. I/O: the session rows' V2G columns, written by `flush_writes()`
after the cycle's limit writes (decide only queues them), and session facts read every
`PERMISSION_REFRESH_S`.

Rules (issue 7; DESIGN.md: session power < 0 is V2G discharge, the allocator stays the
safety authority):
- A session discharges only when all of these hold: its charger is bidirectional
  (`[[station.chargers]] v2g = true`, and a profile that takes negative limits); it has a V2G
  permission (a cloud `v2g.session.start` for its session or vehicle, in force and not
  stopped, or a local API V2G session on it); the horizon plan discharges it now (the
  slot's session target < 0, what `allocator.planner.v2g_setpoints` gives).
- How much: the plan's kW, capped by `[v2g] max_power_kw`, the request's `powerKw` and the
  charger's rating; below the charger's minimum power it does not start.
- How far: down to the SoC floor (the higher of `[v2g] min_soc_pct` and the request's
  `minSocPct`) when the charger reports the EV's SoC, and never past the energy budget the
  planner was given (the request's `energyKwh`, else `[v2g] default_energy_kwh`, battery
  side).
- Departure: the plan keeps every departure target it can; the loop checks it too. A session
  whose time left (less `departure_margin_h`) at its maximum charge power can no longer reach
  its target stops discharging for good and charges with priority.
- Supply: discharge counts for the other EVs like an unreliable source: only what the
  charger measures, only with a fresh grid meter, and only for sessions that keep
  discharging this cycle (a discharge that must end is not counted from its first cycle, so
  the other EVs are lowered at once). The end itself is written by safe apply only out of
  headroom the meter confirms, within `end_timeout_s` (agent/control/apply.py), and increases
  for the others still come only out of headroom the meter confirms.
- `v2g.session.stop` begins at the next cycle (permissions are read every cycle from the
  signals' in-memory copy): the others are lowered then, the discharge ends once the meter
  shows their decrease, at the latest `end_timeout_s` later.
- Records: the discharged kWh (grid side, integrated from the charger's measured power) and
  kind 'v2g' are written to the session's row at most every `PERSIST_S` while it discharges
  and as soon as its EV leaves, so the uplink's session messages carry them.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from agent.config.v2g import V2gSettings
from agent.model.snapshot import VACANT, ConnectorState, Snapshot

if TYPE_CHECKING:
    import sqlite_utils

    from agent.control.sessions import Session
    from agent.store.signals import Signals
    from allocator.guidance import Guidance

log = logging.getLogger(__name__)

PERSIST_S = 1.0  # a discharging session's row is updated at most this often
PERMISSION_REFRESH_S = 2.0  # how long a session's row facts (vehicle, API V2G) are trusted
MAX_GAP_S = 5.0  # a longer gap between two readings integrates no discharge (unknown)
CHARGING_EFFICIENCY = 0.95  # charger kWh -> vehicle battery kWh (the planner's default)


class ChargerLike(Protocol):  # agent.config.settings.ChargerSettings (frozen), without the import
    @property
    def id(self) -> str: ...
    @property
    def max_power_kw(self) -> float: ...
    @property
    def min_power_kw(self) -> float: ...
    @property
    def v2g(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Permission:
    """What the cloud or the local API allow one session (the tightest of its requests)."""

    power_kw: float | None  # None: no cap but the plan's and the settings'
    min_soc_pct: float
    energy_kwh: float  # battery side, for the whole session


@dataclass(frozen=True, slots=True)
class V2gOrders:
    """One cycle's V2G decisions."""

    discharge_kw: Mapping[str, float] = field(default_factory=dict)  # session -> kW (> 0)
    guarded: frozenset[str] = frozenset()  # departure guard tripped: charge with priority
    supply_kw: float = 0.0  # confirmed discharge the other EVs may count on this cycle
    held: Mapping[str, str] = field(default_factory=dict)  # session -> why it does not discharge


@dataclass(slots=True)
class _Tally:
    discharged_kwh: float = 0.0  # grid side
    saved_kwh: float = 0.0
    saved_at: float = float("-inf")
    facts_at: float = float("-inf")
    vehicle_id: str | None = None
    api_v2g: bool = False


class V2gDispatch:
    def __init__(
        self,
        cfg: V2gSettings,
        db: sqlite_utils.Database,
        signals: Signals | None = None,
    ) -> None:
        self.cfg = cfg
        self.db = db
        self.signals = signals
        self._tally: dict[str, _Tally] = {}
        self._goals: dict[str, tuple[datetime, float]] = {}
        self._guarded: set[str] = set()
        self._last_t: float | None = None
        self._store_failed = False
        self._unsaved: dict[str, _Tally] = {}  # discharges queued for flush_writes()

    # --- facts fed by the planner ---------------------------------------------------------

    def set_goal(self, session_id: str, departure: datetime, target_kwh: float) -> None:
        """The session's departure and energy target (battery side), as the planner used."""
        self._goals[session_id] = (departure, target_kwh)

    def discharged_kwh(self, session_id: str) -> float:
        t = self._tally.get(session_id)
        return t.discharged_kwh if t is not None else 0.0

    def battery_taken_kwh(self, session_id: str) -> float:
        """kWh the discharge took out of the vehicle's battery so far."""
        return self.discharged_kwh(session_id) / self.cfg.efficiency

    def permission(self, s: Session, now: datetime, t: float) -> Permission | None:
        """The session's V2G permission in force at `now`, or None."""
        tally = self._facts(s.id, t)
        requests = []
        if self.signals is not None:
            requests = [
                r
                for r in self.signals.v2g_requests(now)
                if r.start <= now
                and (r.session_id == s.id or (r.vehicle_id and r.vehicle_id == tally.vehicle_id))
            ]
        if not requests and not tally.api_v2g:
            return None
        powers = [r.power_kw for r in requests]
        energies = [r.energy_kwh for r in requests if r.energy_kwh is not None]
        return Permission(
            power_kw=min(powers) if powers else None,
            min_soc_pct=max([self.cfg.min_soc_pct] + [r.min_soc_pct for r in requests]),
            energy_kwh=min(energies) if energies else self.cfg.default_energy_kwh,
        )

    def plan_fields(self, s: Session, charger: ChargerLike, now: datetime, t: float) -> dict:
        """The planner's V2G fields of a session (SessionSpec keywords): off unless the
        charger is bidirectional and the session permitted and not guarded."""
        if not charger.v2g or s.id in self._guarded:
            return {}
        perm = self.permission(s, now, t)
        if perm is None:
            return {}
        power = min(self.cfg.max_power_kw, charger.max_power_kw)
        if perm.power_kw is not None:
            power = min(power, perm.power_kw)
        left = max(0.0, perm.energy_kwh - self.battery_taken_kwh(s.id))
        return {"v2g": True, "v2g_max_power": power, "v2g_energy": left}

    # --- every cycle ------------------------------------------------------------------------

    def account(self, snap: Snapshot, active: Mapping[tuple[str, int], Session]) -> None:
        """Integrate each active session's measured discharge since the last cycle and
        queue it for the store (before the session tracker sees the snapshot, so a session ending now
        is stored with its last kWh)."""
        dt = 0.0 if self._last_t is None else snap.t - self._last_t
        self._last_t = snap.t
        if not 0.0 < dt <= MAX_GAP_S:
            dt = 0.0
        for ch in snap.chargers:
            if not ch.reachable:
                continue
            for c in ch.connectors:
                s = active.get((ch.id, c.idx))
                if s is None:
                    continue
                tally = self._tally.get(s.id)
                if tally is None:
                    tally = self._tally[s.id] = self._load(s.id)
                if c.power_kw < 0.0:
                    tally.discharged_kwh += -c.power_kw * dt / 3600.0
                if tally.discharged_kwh > tally.saved_kwh and (
                    c.state == VACANT or snap.t - tally.saved_at >= PERSIST_S
                ):
                    self._save(s.id, tally)
        live = {s.id for s in active.values()}
        for sid in [x for x in self._tally if x not in live]:
            tally = self._tally.pop(sid)
            if tally.discharged_kwh > tally.saved_kwh:
                self._save(sid, tally)  # stopped on request between two cycles
            self._goals.pop(sid, None)
            self._guarded.discard(sid)

    def dispatch(
        self,
        snap: Snapshot,
        sessions: Iterable[Session],
        chargers: Mapping[str, ChargerLike],
        guidance: Guidance | None,
    ) -> V2gOrders:
        """This cycle's discharges (kW > 0 per session), guarded sessions and the supply.
        `sessions`: those on reachable chargers (the controller's live ones)."""
        if guidance is None:
            return V2gOrders()
        conns = {(c.charger_id, c.idx): c for c in snap.connectors()}
        out: dict[str, float] = {}
        held: dict[str, str] = {}
        supply = 0.0
        for s in sessions:
            planned = guidance.session_kw.get(s.id)
            ch = chargers.get(s.charger_id)
            if planned is None or planned >= 0 or ch is None or not ch.v2g:
                continue
            conn = conns[(s.charger_id, s.connector_idx)]
            kw, why = self._discharge(s, ch, conn, -planned, snap)
            if why is not None:
                held[s.id] = why
                continue
            out[s.id] = round(kw, 3)
            if snap.grid_kw is not None and conn.power_kw < 0:
                supply += min(-conn.power_kw, kw)
        return V2gOrders(out, frozenset(self._guarded), supply, held)

    def _discharge(self, s: Session, ch: ChargerLike, conn: ConnectorState, planned_kw: float,
                   snap: Snapshot) -> tuple[float, str | None]:
        """(kW, None) when the session discharges now, else (0, why not)."""
        why = self._departure_guard(s, ch, snap)
        if why is not None:
            return 0.0, why
        perm = self.permission(s, snap.ts, snap.t)
        if perm is None:
            return 0.0, "no V2G permission"
        why = self._floor(s, conn, perm)
        if why is not None:
            return 0.0, why
        kw = min(planned_kw, self.cfg.max_power_kw, ch.max_power_kw)
        if perm.power_kw is not None:
            kw = min(kw, perm.power_kw)
        if kw < max(ch.min_power_kw, 1e-3):
            return 0.0, "below the charger's minimum power"
        return kw, None

    def _departure_guard(self, s: Session, ch: ChargerLike, snap: Snapshot) -> str | None:
        if s.id in self._guarded:
            return "departure guard"
        goal = self._goals.get(s.id)
        if goal is not None:
            departure, target = goal
            net = s.energy_kwh * CHARGING_EFFICIENCY - self.battery_taken_kwh(s.id)
            needed = target - net
            vmax = s.max_kw(ch.max_power_kw)
            left_h = (departure - snap.ts).total_seconds() / 3600.0 - self.cfg.departure_margin_h
            if needed > 0 and max(0.0, left_h) * vmax * CHARGING_EFFICIENCY < needed:
                self._guarded.add(s.id)
                log.info("session %s: departure guard, V2G discharge ends (%.1f kWh to go)",
                         s.id, needed)
                return "departure guard"
        return None

    def _floor(self, s: Session, conn: ConnectorState, perm: Permission) -> str | None:
        if conn.soc_pct is not None and conn.soc_pct <= perm.min_soc_pct:
            return "at the V2G SoC floor"
        if self.battery_taken_kwh(s.id) >= perm.energy_kwh - 1e-6:
            return "V2G energy budget used"
        return None

    # --- the session row ----------------------------------------------------------------------

    def _facts(self, session_id: str, t: float) -> _Tally:
        tally = self._tally.get(session_id)
        if tally is None:
            tally = self._tally[session_id] = self._load(session_id)
        if t - tally.facts_at >= PERMISSION_REFRESH_S:
            tally.facts_at = t
            try:
                row = self.db.execute(
                    "SELECT vehicle_id FROM sessions WHERE id = ?", [session_id]
                ).fetchone()
                tally.vehicle_id = row[0] if row else None
                tally.api_v2g = (
                    self.db.execute(
                        "SELECT 1 FROM fleet_sessions WHERE kind = 'v2g' AND status = 'active' "
                        "AND session_id = ?",
                        [session_id],
                    ).fetchone()
                    is not None
                )
            except sqlite3.Error as exc:  # keep the last facts; the loop must go on
                log.debug("v2g: session facts not read: %s", exc)
        return tally

    def _load(self, session_id: str) -> _Tally:
        """A session seen first (or again after a restart): its recorded discharge."""
        try:
            row = self.db.execute(
                "SELECT discharged_kwh FROM sessions WHERE id = ?", [session_id]
            ).fetchone()
        except sqlite3.Error:
            row = None
        kwh = float(row[0] or 0.0) if row else 0.0
        return _Tally(discharged_kwh=kwh, saved_kwh=kwh)

    def _save(self, session_id: str, tally: _Tally) -> None:
        """Queue the session's discharged kWh for `flush_writes()` (account() runs inside
        the controller's decide, which does no I/O)."""
        self._unsaved[session_id] = tally

    def flush_writes(self, t: float) -> None:
        """Store the discharges account() queued; a store refusing them keeps them queued
        for the next cycle and never stops the loop."""
        while self._unsaved:
            session_id, tally = next(iter(self._unsaved.items()))
            try:
                with self.db.conn:
                    self.db.execute(
                        "UPDATE sessions SET discharged_kwh = ?, kind = 'v2g' WHERE id = ?",
                        [round(tally.discharged_kwh, 4), session_id],
                    )
            except sqlite3.Error as exc:
                if not self._store_failed:
                    log.error("v2g: discharged energy not stored (%s); retrying", exc)
                    self._store_failed = True
                return
            del self._unsaved[session_id]
            self._store_failed = False
            tally.saved_kwh = tally.discharged_kwh
            tally.saved_at = t
