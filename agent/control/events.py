"""The control cycle's event log: degraded-mode changes and other station events, stored in
the `events` table and handed to the uplink.

A store that refuses writes (disk full) keeps the events in memory (the latest
`MAX_UNLOGGED`) for a retry a second later and never stops the control loop.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from typing import TYPE_CHECKING, Protocol

from agent.model.clock import Clock, iso

if TYPE_CHECKING:
    import sqlite_utils

log = logging.getLogger(__name__)
MAX_UNLOGGED = 1000  # events kept in memory while the store refuses writes


class UplinkHook(Protocol):
    """Integration point for the MQTT uplink (agent/uplink/): the loop hands it session
    events as they happen, telemetry every `telemetry_interval_s` and health every
    `health_interval_s`; the uplink commits them to its outbox. Must not block."""

    def enqueue(self, kind: str, payload: dict) -> None: ...


class EventLog:
    def __init__(self, db: sqlite_utils.Database, clock: Clock, uplink: UplinkHook | None) -> None:
        self.db = db
        self.clock = clock
        self.uplink = uplink
        self.error: str | None = None  # why the store refuses the event log, if it does
        self._unlogged: list[dict] = []  # events the store refused, oldest first
        self._retry_at = float("-inf")

    def event(self, kind: str, data: dict) -> None:
        row = {"ts": iso(self.clock.now()), "kind": kind, "data": json.dumps(data)}
        self._unlogged.append(row)
        self._write()
        if self.uplink is not None:
            self.enqueue(kind, data)

    def mode_change(self, old: frozenset[str], new: frozenset[str]) -> None:
        for mode in sorted(new - old):
            log.warning("degraded mode on: %s", mode)
            self.event("degraded_on", {"mode": mode})
        for mode in sorted(old - new):
            log.info("degraded mode off: %s", mode)
            self.event("degraded_off", {"mode": mode})

    def retry(self, now: float) -> None:
        """Write the events a refusing store left waiting, once their retry is due."""
        if self._unlogged and now >= self._retry_at:
            self._write()

    def enqueue(self, kind: str, payload: dict) -> None:
        try:
            assert self.uplink is not None
            self.uplink.enqueue(kind, payload)
        except Exception:  # the uplink must never stop the control loop
            log.exception("uplink enqueue %s failed", kind)

    def _write(self) -> None:
        db = self.db
        try:
            with db.conn:
                db.table("events").insert_all(self._unlogged)
        except sqlite3.Error as exc:
            if self.error is None:
                log.error("store refuses the event log (%s): events kept, retrying", exc)
            self.error = f"{exc} ({len(self._unlogged)} events pending)"
            del self._unlogged[:-MAX_UNLOGGED]  # a long outage keeps the latest ones
            self._retry_at = self.clock.monotonic() + 1.0
            return
        self._unlogged.clear()
        if self.error is not None:
            log.info("store writable again: event log caught up")
            self.error = None
