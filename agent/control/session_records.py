"""The store's `sessions` rows and their events, for every kind of session: the tracker's
hardware sessions (source 'hardware') and those reported through the local API by a station
with API chargers (source 'api', agent.app.virtual_station), both kept by
`agent.control.sessions.SessionTracker`. One row shape, one event payload (`Session.public()`
plus a stop `reason`), and one way to the uplink: the event hook (the daemon's
`UplinkBridge.enqueue`) is called once the row it reports is committed, so a session is
published the same way whichever part of the agent runs it.

A store that refuses writes (disk full, I/O error) never stops the caller: the failed
writes are kept in order (one per session and kind) and retried every `RETRY_S` until they
succeed; `store_error` says why meanwhile. Inside `deferred()` writes are only queued, and
`flush_writes()` runs them together in one transaction (the control cycle does no I/O in
`decide`; the API station writes a cycle's allocations with one fsync).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlite_utils

from agent.model.clock import Clock, iso

log = logging.getLogger(__name__)

RETRY_S = 1.0  # how often writes a failing store refused are tried again

EventHook = Callable[[str, dict], None]


@dataclass(slots=True)
class Session:
    id: str
    charger_id: str
    connector_idx: int
    started_at: str
    energy_kwh: float = 0.0
    peak_kw: float = 0.0
    power_kw: float = 0.0
    vehicle_max_kw: float | None = None
    # The id tag the charger reported (OCPP): vehicle schedules and V2G permissions by
    # vehicle find the session through the row's vehicle_id.
    vehicle_id: str | None = None
    # The charger's transaction id (OCPP), in memory only: a different one on the same
    # connector ends this session and starts the next.
    transaction_id: str | None = None
    # The charger counter's value when it last reset under this session (see _energy).
    counter_offset_kwh: float = 0.0
    last_counter_kwh: float = 0.0
    status: str = "active"
    stopped_at: str | None = None
    cost_eur: float = 0.0  # energy so far, each kWh at the import price when it was counted

    def max_kw(self, charger_max_kw: float) -> float:
        """The most it may draw: the EV's maximum where known, within the charger's rating."""
        return min(self.vehicle_max_kw or charger_max_kw, charger_max_kw)

    def public(self) -> dict:
        d = asdict(self)
        d.pop("counter_offset_kwh")
        d.pop("last_counter_kwh")
        return d


class SessionRecords:
    """The rows of one `source` ('hardware' or 'api'). Not thread-safe: one event loop."""

    def __init__(
        self,
        db: sqlite_utils.Database,
        clock: Clock,
        source: str,
        on_event: EventHook | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.source = source
        self.on_event = on_event
        self.store_error: str | None = None
        # Writes the store refused, in order, keyed so a session has one of each kind.
        self._pending: dict[tuple[str, str], Callable[[], None]] = {}
        self._retry_at = float("-inf")
        self._deferring = False  # inside deferred(): writes are queued for flush_writes()
        self._hooks_due: list[tuple[str, dict]] = []  # on_event calls waiting for a commit

    # ----- reading (start-up) -----
    def active_rows(self) -> list[dict[str, Any]]:
        """The `active` rows of this source, oldest first: the sessions to resume."""
        return list(self.db.query(
            "SELECT * FROM sessions WHERE status = 'active' AND source = ? ORDER BY started_at",
            [self.source],
        ))  # fmt: skip

    def latched_connectors(self) -> set[tuple[str, int]]:
        return {(r["charger_id"], r["connector_idx"]) for r in self.db.query(
            "SELECT charger_id, connector_idx FROM sessions WHERE latched = 1 AND source = ?",
            [self.source],
        )}  # fmt: skip

    # ----- writing -----
    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Queue the writes made inside (no I/O) for `flush_writes()`."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False

    def start(self, s: Session, ts: datetime, now: float, **columns: Any) -> None:
        """The session's row (`columns`: more of its fields, e.g. kind, fleet_id) and its
        `session_started` event."""
        values = {"id": s.id, "charger_id": s.charger_id, "connector_idx": s.connector_idx,
                  "status": "active", "source": self.source, "started_at": s.started_at,
                  "vehicle_max_kw": s.vehicle_max_kw, "vehicle_id": s.vehicle_id,
                  "updated_at": s.started_at, **columns}  # fmt: skip
        names = ", ".join(values)
        marks = ", ".join("?" for _ in values)

        def write() -> None:
            self.db.execute(
                f"INSERT INTO sessions ({names}) VALUES ({marks})", list(values.values())
            )
            self.event("session_started", s, ts)

        self._store(("start", s.id), write, now)

    def identify(self, s: Session, vehicle_id: str, now: float) -> None:
        def write() -> None:
            self.db.execute("UPDATE sessions SET vehicle_id = ? WHERE id = ?", [vehicle_id, s.id])

        self._store(("vehicle", s.id), write, now)

    def persist(self, s: Session, now: float, **columns: Any) -> None:
        """Energy, peak and cost so far (and `columns`), kept for a retry if refused."""
        self._store(("persist", s.id), lambda: self._persist_row(s, **columns), now)

    def stop(self, s: Session, ts: datetime, reason: str, now: float, *, latched: bool = False,
             **columns: Any) -> None:  # fmt: skip
        """The final figures, the stop reason and the `session_stopped` event."""
        s.status = "stopped"
        s.stopped_at = iso(ts)
        s.power_kw = 0.0

        def write() -> None:
            self._persist_row(s, stop_reason=reason, latched=int(latched), **columns)
            self.event("session_stopped", s, ts, reason=reason)

        self._pending.pop(("persist", s.id), None)  # the stop row carries the final figures
        self._store(("stop", s.id), write, now)

    def release(self, key: tuple[str, int], now: float) -> None:
        """The EV left a latched connector: its stopped rows no longer block it."""

        def write() -> None:
            self.db.execute(
                "UPDATE sessions SET latched = 0 WHERE latched = 1 AND charger_id = ?"
                " AND connector_idx = ?",
                list(key),
            )

        self._store(("release", f"{key[0]}/{key[1]}"), write, now)

    def announce(self, kind: str, s: Session, ts: datetime, now: float) -> None:
        """An event about a session whose row needs no change (e.g. `session_resumed`)."""
        self._store((kind, s.id), lambda: self.event(kind, s, ts), now)

    def flush_writes(self, now: float) -> None:
        """Run the queued writes (and any the store refused before), in order; a store
        that refuses them keeps them for a retry every `RETRY_S`."""
        if self._pending and now >= self._retry_at:
            self._retry(now)

    def flush(self, sessions: list[Session]) -> None:
        """Persist these sessions' figures now (shutdown); writes the store refused earlier
        are tried once more first. Raises if the store still refuses."""
        self._retry(self.clock.monotonic())
        with self._transaction():
            for s in sessions:
                self._persist_row(s)

    def _persist_row(self, s: Session, **columns: Any) -> None:
        # Plain SQL, not sqlite_utils' update: that one commits, which would end the
        # transaction a batch of writes shares (_transaction).
        values = {"status": s.status, "stopped_at": s.stopped_at,
                  "energy_kwh": round(s.energy_kwh, 4), "peak_kw": round(s.peak_kw, 3),
                  "vehicle_max_kw": s.vehicle_max_kw, "cost_eur": round(s.cost_eur, 6),
                  "updated_at": iso(self.clock.now()), **columns}  # fmt: skip
        sets = ", ".join(f"{name} = ?" for name in values)
        self.db.execute(f"UPDATE sessions SET {sets} WHERE id = ?", [*values.values(), s.id])

    def _store(self, key: tuple[str, str], write: Callable[[], None], now: float) -> None:
        """Run one write transaction; when the store refuses it, keep it for a retry (after
        the writes already waiting, so a session's rows land in order). Inside `deferred()`
        it is only queued."""
        if self._deferring:
            self._pending[key] = write
            return
        if self._pending:
            self._pending[key] = write
            if now >= self._retry_at:
                self._retry(now)
            return
        try:
            with self._transaction():
                write()
        except sqlite3.Error as exc:
            self._hooks_due.clear()
            self._pending[key] = write
            self._failed(exc, now)
            return
        self._fire_hooks()

    def _retry(self, now: float) -> None:
        """Every waiting write in one transaction (one fsync for a cycle's rows, not one
        per session); refused, none of them is lost: all stay queued, in order."""
        if self._pending:
            try:
                with self._transaction():
                    for write in list(self._pending.values()):
                        write()
            except sqlite3.Error as exc:
                self._hooks_due.clear()  # re-collected when the writes run again
                self._failed(exc, now)
                return
            self._pending.clear()
            self._fire_hooks()
        if self.store_error is not None:
            log.info("store writable again: session records caught up")
            self.store_error = None

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One explicit transaction (the store's connections run in autocommit mode)."""
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # SQLite may have rolled back already (disk full)
                conn.execute("ROLLBACK")
            raise

    def _fire_hooks(self) -> None:
        """Session events reach the uplink once their rows are committed."""
        due, self._hooks_due = self._hooks_due, []
        if self.on_event is None:
            return
        for kind, payload in due:
            try:
                self.on_event(kind, payload)
            except Exception:  # the uplink must never break session tracking
                log.exception("session event hook failed")

    def _failed(self, exc: sqlite3.Error, now: float) -> None:
        if self.store_error is None:  # logged once per episode
            log.error("store refuses session writes (%s): kept in memory, retrying", exc)
        self.store_error = f"{exc} ({len(self._pending)} session writes pending)"
        self._retry_at = now + RETRY_S

    def event(self, kind: str, s: Session, ts: datetime, reason: str | None = None) -> None:
        """The event row (inside a write: its hook fires once that commits)."""
        payload = s.public()
        if reason is not None:
            payload["reason"] = reason
        self.db.execute(
            "INSERT INTO events (ts, kind, session_id, data) VALUES (?, ?, ?, ?)",
            [iso(ts), kind, s.id, json.dumps(payload)],
        )
        self._hooks_due.append((kind, payload))
