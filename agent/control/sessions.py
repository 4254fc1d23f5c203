"""Charging sessions from connector states, persisted so a restart resumes them.

A session starts when a connector reports an EV (IEC 61851 B, C or D) and ends when it
reports A. E/F (error, unavailable) and unreachable chargers change nothing: a session is
not ended because a charger stopped answering. Energy comes from the charger's session
counter (a counter that resets mid-session is accumulated, never lost); peak power is kept.
Rows are written at start and stop, and energy/peak at most every `persist_every_s`, so
after a restart mid-session the same session continues with the same id and energy.
`update()` runs inside the controller's `decide` and does no I/O: it queues its writes
(write intents, in order) and `flush_writes()` runs them once the cycle's limit writes
are out; `stop()` (between cycles) writes at once.

Cost: each kWh the session's counter adds is priced at the import price in force when it
was counted (`import_price(ts)`, the ledger's tariff lookup), so a session spanning a price
change pays each part at its own price; the sum is persisted with the energy (`cost_eur`).

Ownership across a restart: the tracker resumes only the rows of its own `source`: a
hardware station's tracker ('hardware') never adopts the rows of sessions reported through
the local API ('api', the tracker of a station with API chargers: agent/app/virtual_station.py),
whatever connector they name. A resumed session the station cannot
carry on is stopped, with its stop event, on the first cycle that shows it: its charger
or connector is no longer configured ("charger_removed", "connector_removed", checked
every cycle so a reconfiguration is covered too), or its connector's first fresh reading
is A, the EV having left while the agent was down ("agent_restart_vacant").

Stop latch: a session stopped on request (cloud `session.stop`, the local API) with the EV
still plugged in leaves its connector blocked (no session, 0 kW) until the EV is unplugged.
The latch is the stopped row's `latched` flag, so it survives an agent restart; the
connector reporting A (vacant) releases it.

API sessions: a station whose chargers are known through the local API (virtual chargers,
agent/control/virtual.py) learns of a session from its integration, which names it: `begin()`
tracks it at once under the id the API gave it (its connector reads occupied from then on),
`reported()` books a consumption report as it arrives, and a stop on request does not latch
the connector (the integration, not a cable, says when the next session starts there).

Rows and events are written through `SessionRecords` (agent/control/session_records.py): a store that refuses writes (disk full, I/O error) never
stops the tracking, nor the control cycle that calls it (the writes wait, in order, for a
retry); `store_error` says why meanwhile.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlite_utils

from agent.control.session_records import RETRY_S, EventHook, Session, SessionRecords
from agent.model.clock import Clock, iso
from agent.model.snapshot import VACANT, Snapshot

log = logging.getLogger(__name__)

# The `sessions.source` of the rows this tracker writes, and the only ones it resumes.
SOURCE = "hardware"

ImportPrice = Callable[[datetime], float]  # EUR/kWh in force at a time

__all__ = ["RETRY_S", "SOURCE", "EventHook", "ImportPrice", "Session", "SessionTracker"]


class SessionTracker:
    def __init__(
        self,
        db: sqlite_utils.Database,
        clock: Clock,
        on_event: EventHook | None = None,
        persist_every_s: float = 5.0,
        import_price: ImportPrice | None = None,
        source: str = SOURCE,
    ) -> None:
        """`source`: the rows it writes and resumes ('hardware', or 'api' for a station
        with API chargers)."""
        self.db = db
        self.clock = clock
        self.records = SessionRecords(db, clock, source, on_event)
        self.persist_every_s = persist_every_s
        self.import_price = import_price
        self.started = 0
        self.stopped = 0
        self._last_persist: dict[str, float] = {}
        self.active: dict[tuple[str, int], Session] = {}
        # Connectors whose session was stopped on request (cloud, API) while the EV stays
        # plugged in: no new session there until the connector reports A (unplugged).
        self.blocked: set[tuple[str, int]] = set()
        # Resumed sessions whose connector has not given a fresh reading since the restart.
        self._unconfirmed: set[str] = set()
        for row in self.records.active_rows():
            s = Session(
                id=row["id"],
                charger_id=row["charger_id"],
                connector_idx=row["connector_idx"],
                started_at=row["started_at"],
                energy_kwh=row["energy_kwh"],
                peak_kw=row["peak_kw"],
                vehicle_max_kw=row["vehicle_max_kw"],
                vehicle_id=row["vehicle_id"],
                # Resume: the charger's counter still holds this session's energy, unless
                # it reset while we were down, which _energy() detects as a drop.
                last_counter_kwh=row["energy_kwh"],
                cost_eur=row["cost_eur"],
            )
            key = (s.charger_id, s.connector_idx)
            if key in self.active:  # two active rows on one connector: the older goes on
                log.warning("session %s on %s#%d stopped at start: connector taken by %s",
                            s.id, *key, self.active[key].id)  # fmt: skip
                self.records.stop(s, clock.now(), "connector_taken", clock.monotonic())
                continue
            self.active[key] = s
            self._unconfirmed.add(s.id)
        self.blocked |= self.records.latched_connectors()

    @property
    def store_error(self) -> str | None:
        """Why the store refuses session writes, while it does."""
        return self.records.store_error

    def update(self, snap: Snapshot) -> list[Session]:
        """Start, update and stop sessions from one snapshot; return the active ones. The
        store writes this implies are queued for `flush_writes()` (no I/O here)."""
        with self.records.deferred():
            return self._update(snap)

    def flush_writes(self, now: float) -> None:
        """Run the writes `update()` queued (and any the store refused before), in order; a
        store that refuses them keeps them for a retry every `RETRY_S`."""
        self.records.flush_writes(now)

    def _update(self, snap: Snapshot) -> list[Session]:
        now = snap.t
        price: float | None = None  # looked up once per snapshot, only if energy was added
        had = len(self.active)
        seen = 0  # sessions found on a configured connector (cheap check for removed ones)
        for ch in snap.chargers:
            if not ch.reachable:
                seen += sum(1 for c in ch.connectors if (c.charger_id, c.idx) in self.active)
                continue
            for c in ch.connectors:
                key = (c.charger_id, c.idx)
                s = self.active.get(key)
                if s is not None:
                    seen += 1
                    if s.id in self._unconfirmed:
                        self._unconfirmed.discard(s.id)
                        if c.state == VACANT:
                            self._stop(s, snap.ts, "agent_restart_vacant")
                            s = None
                if key in self.blocked:
                    if c.state == VACANT:
                        self._release(key)
                    continue
                if c.occupied:
                    if (s is not None and c.transaction_id and s.transaction_id
                            and c.transaction_id != s.transaction_id):  # fmt: skip
                        # Unplugged and plugged again between two reads: two sessions.
                        self._stop(s, snap.ts, "unplugged")
                        s = None
                    if s is None:
                        # A transaction's counter is its own from zero (OCPP).
                        s = self._start(c.charger_id, c.idx,
                                        0.0 if c.transaction_id else c.energy_kwh, snap)
                    if c.transaction_id is not None:
                        s.transaction_id = c.transaction_id
                    s.power_kw = c.power_kw
                    s.peak_kw = max(s.peak_kw, c.power_kw)
                    if c.ev_max_kw is not None:
                        s.vehicle_max_kw = c.ev_max_kw
                    if c.vehicle_id and c.vehicle_id != s.vehicle_id:
                        self._identify(s, c.vehicle_id, now)
                    before = s.energy_kwh
                    s.energy_kwh = _energy(s, c.energy_kwh)
                    if s.energy_kwh > before and self.import_price is not None:
                        if price is None:
                            price = self._price(snap.ts)
                        s.cost_eur += (s.energy_kwh - before) * price
                    # A resumed session (no entry yet) is saved every period from its
                    # first cycle on, like a new one (it was never saved again before).
                    if now - self._last_persist.setdefault(s.id, now) >= self.persist_every_s:
                        self._persist(s)
                        self._last_persist[s.id] = now
                elif c.state == VACANT and s is not None:
                    self._stop(s, snap.ts, "unplugged")
        if seen < had:
            self._stop_unconfigured(snap)
        return list(self.active.values())

    def _stop_unconfigured(self, snap: Snapshot) -> None:
        """Stop the sessions on connectors the station no longer has (a charger removed or
        given fewer connectors while a session was active, before a restart or since)."""
        chargers = {ch.id: len(ch.connectors) for ch in snap.chargers}
        for (charger_id, idx), s in list(self.active.items()):
            count = chargers.get(charger_id)
            if count is None:
                reason = "charger_removed"
            elif not 1 <= idx <= count:
                reason = "connector_removed"
            else:
                continue
            log.warning("session %s on %s#%d stopped: %s", s.id, charger_id, idx, reason)
            self._stop(s, snap.ts, reason)

    def stop(self, session_id: str, reason: str | None = None, *, latch: bool = True) -> Session:
        """End an active session now (cloud `session.stop`, the local API). Its connector
        gets no power (no session, target 0) and, with `latch`, no new session until the EV
        is unplugged. Raises KeyError for an unknown id."""
        s = self.by_id(session_id)
        if s is None:
            raise KeyError(session_id)
        if latch:
            self.blocked.add((s.charger_id, s.connector_idx))  # before the stop row: it carries the latch
        self._stop(s, self.clock.now(), reason or "stopped")
        return s

    def by_id(self, session_id: str) -> Session | None:
        return next((x for x in self.active.values() if x.id == session_id), None)

    def begin(self, s: Session, **columns: Any) -> Session:
        """Track a session its integration named (the local API's): active at once under
        its own id, its row written (`columns`: kind, fleet_id, limit_kw...). Its connector
        must read occupied from the next snapshot on, with the session's counter from 0."""
        key = (s.charger_id, s.connector_idx)
        if key in self.active:
            raise ValueError(f"connector {key[0]}#{key[1]} has session {self.active[key].id}")
        self.active[key] = s
        self._last_persist[s.id] = self.clock.monotonic()
        self.records.start(s, self.clock.now(), self.clock.monotonic(), **columns)
        self.started += 1
        return s

    def reported(self, session_id: str, power_kw: float, counter_kwh: float,
                 **columns: Any) -> Session:  # fmt: skip
        """A consumption report of an API session, booked as it arrives (power, peak, the
        energy its connector's counter now holds, costed at the price in force) and saved
        with `columns` (e.g. the limit handed out). KeyError for an id that is not active."""
        s = self.by_id(session_id)
        if s is None:
            raise KeyError(session_id)
        now = self.clock.monotonic()
        s.power_kw = power_kw
        s.peak_kw = max(s.peak_kw, power_kw)
        before = s.energy_kwh
        s.energy_kwh = _energy(s, counter_kwh)
        if s.energy_kwh > before and self.import_price is not None:
            s.cost_eur += (s.energy_kwh - before) * self._price(self.clock.now())
        self.records.persist(s, now, **columns)
        self._last_persist[s.id] = now
        return s

    def _price(self, ts: datetime) -> float:
        assert self.import_price is not None
        try:
            return float(self.import_price(ts))
        except Exception as exc:  # a broken tariff store must not stop session tracking
            log.warning("import price unavailable (%s): energy not costed this cycle", exc)
            return 0.0

    def _release(self, key: tuple[str, int]) -> None:
        """The EV left a latched connector: sessions may start there again."""
        self.blocked.discard(key)
        self.records.release(key, self.clock.monotonic())

    def _start(self, charger_id: str, idx: int, counter: float, snap: Snapshot) -> Session:
        s = Session(
            id=str(uuid.uuid4()),
            charger_id=charger_id,
            connector_idx=idx,
            started_at=iso(snap.ts),
            # A counter left over from the previous session is not this session's energy
            # unless it restarts from zero, which _energy() then detects.
            counter_offset_kwh=-counter,
            last_counter_kwh=counter,
        )
        self.active[(charger_id, idx)] = s
        self._last_persist[s.id] = snap.t
        self.records.start(s, snap.ts, snap.t)
        self.started += 1
        return s

    def _identify(self, s: Session, vehicle_id: str, now: float) -> None:
        """The charger named who charges (an OCPP id tag, usually a moment after plug-in):
        stored at once, not with the periodic save, so the planner and V2G see it."""
        s.vehicle_id = vehicle_id
        self.records.identify(s, vehicle_id, now)

    def _stop(self, s: Session, ts: datetime, reason: str) -> None:
        latched = (s.charger_id, s.connector_idx) in self.blocked
        self.records.stop(s, ts, reason, self.clock.monotonic(), latched=latched)
        del self.active[(s.charger_id, s.connector_idx)]
        self._last_persist.pop(s.id, None)
        self._unconfirmed.discard(s.id)
        self.stopped += 1

    def _persist(self, s: Session) -> None:
        """Energy and peak so far (kept for a retry if refused)."""
        self.records.persist(s, self.clock.monotonic())

    def flush(self) -> None:
        """Persist every active session's energy and peak now (shutdown); writes the store
        refused earlier are tried once more first. Raises if the store still refuses."""
        self.records.flush(list(self.active.values()))


def _energy(s: Session, counter: float) -> float:
    if counter < s.last_counter_kwh - 1e-6:
        # The counter restarted (new session on the charger, or a charger reboot): what
        # was counted so far is kept and the new count adds to it.
        s.counter_offset_kwh = s.energy_kwh
    s.last_counter_kwh = counter
    return max(s.energy_kwh, s.counter_offset_kwh + counter)
