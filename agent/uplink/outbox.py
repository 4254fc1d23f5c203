"""The SQLite outbox: every uplink message is committed here before it is published.

- `seq` is allocated in the same transaction that stores the message's exact bytes, from a
  counter row that never goes back, so it survives restarts and power loss (WAL +
  synchronous=FULL from agent.store.connect).
- Rows leave only through `delete()` (the publisher calls it after a successful PUBACK) or
  through the caps: past `max_rows` / `max_bytes`, old telemetry is thinned (every other
  row of the oldest, finest-grained telemetry) down to one sample in `thin_max_stride`,
  then dropped oldest first. Sessions, health, savings and replies are never dropped; if
  they alone exceed the cap the outbox grows past it and says so in `stats().over_cap`.
- Appends can be batched (`append_many`, or several appends inside `transaction()`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlite_utils

from agent.uplink.messages import Message, envelope_json

log = logging.getLogger(__name__)

DROPPABLE = "telemetry"
# When the cap is hit, free down to this fraction of it so thinning runs in batches
# rather than on every append.
HYSTERESIS = 0.99


@dataclass(frozen=True)
class Row:
    seq: int
    topic: str
    payload: bytes
    created: float  # wall clock seconds at commit (latency statistics)


@dataclass(frozen=True)
class OutboxStats:
    depth: int
    bytes: int
    oldest_seq: int | None
    last_seq: int
    thinned: int
    dropped: int
    over_cap: bool


class Outbox:
    def __init__(
        self,
        db: sqlite_utils.Database,
        *,
        station_id: str,
        base_topic: str,
        max_rows: int = 500_000,
        max_bytes: int = 256 * 1024 * 1024,
        thin_max_stride: int = 8,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.conn: sqlite3.Connection = db.conn
        self.station_id = station_id
        self.base_topic = base_topic
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.thin_max_stride = max(1, thin_max_stride)
        self.clock = clock
        self._listeners: list[Callable[[], None]] = []
        self._tx_depth = 0
        self._pending_rows = 0
        self._pending_bytes = 0
        self._load()

    # --- state --------------------------------------------------------------------------

    def _load(self) -> None:
        rows, size = self.conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(length(payload)), 0) FROM outbox"
        ).fetchone()
        self._rows, self._bytes = int(rows), int(size)
        counters = dict(self.conn.execute("SELECT name, value FROM uplink_counters").fetchall())
        max_seq = self.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM outbox").fetchone()[0]
        # The counter is authoritative; MAX(seq) only guards a store written by hand.
        self._last_seq = max(int(counters.get("last_seq", 0)), int(max_seq))
        self._thinned = int(counters.get("thinned", 0))
        self._dropped = int(counters.get("dropped", 0))

    @property
    def last_seq(self) -> int:
        return self._last_seq

    def stats(self) -> OutboxStats:
        oldest = self.conn.execute("SELECT MIN(seq) FROM outbox").fetchone()[0]
        return OutboxStats(
            depth=self._rows,
            bytes=self._bytes,
            oldest_seq=oldest,
            last_seq=self._last_seq,
            thinned=self._thinned,
            dropped=self._dropped,
            over_cap=self._over_cap(1.0),
        )

    def add_listener(self, callback: Callable[[], None]) -> None:
        """`callback()` runs after every commit that added rows (the publisher's wake-up)."""
        self._listeners.append(callback)

    # --- writing ------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One durable commit for everything inside (nested uses join the outer one)."""
        if self._tx_depth:
            self._tx_depth += 1
            try:
                yield self.conn
            finally:
                self._tx_depth -= 1
            return
        saved = (self._last_seq, self._thinned, self._dropped, self._rows, self._bytes)
        self.conn.execute("BEGIN IMMEDIATE")
        self._tx_depth = 1
        self._pending_rows = 0
        try:
            yield self.conn
            if self._pending_rows:
                self._enforce_caps()
            self._save_counters()
            self.conn.execute("COMMIT")
        except BaseException:
            # SQLite may already have rolled back by itself (SQLITE_FULL does): a second
            # ROLLBACK would raise and skip the restore below, leaving a seq gap.
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            self._last_seq, self._thinned, self._dropped, self._rows, self._bytes = saved
            raise
        finally:
            self._tx_depth = 0
        if self._pending_rows:
            for callback in self._listeners:
                callback()

    def append(self, message: Message, *, ts: datetime | None = None) -> int:
        """Commit one message; returns its seq."""
        with self.transaction():
            return self._insert(message, ts)

    def append_many(self, messages: Iterable[Message]) -> list[int]:
        """Commit many messages in one transaction (one fsync)."""
        with self.transaction():
            return [self._insert(m, None) for m in messages]

    def append_raw(self, kind: str, topic_name: str, schema: str, body_json: str) -> int:
        """For callers holding pre-serialised bodies (the command dispatcher's replies)."""
        with self.transaction():
            return self._insert_bytes(kind, topic_name, schema, body_json, None)

    def _insert(self, message: Message, ts: datetime | None) -> int:
        return self._insert_bytes(
            message.KIND, message.TOPIC, message.SCHEMA, message.body_json(), ts
        )

    def _insert_bytes(
        self, kind: str, topic_name: str, schema: str, body_json: str, ts: datetime | None
    ) -> int:
        assert self._tx_depth, "inside transaction()"
        seq = self._last_seq + 1
        payload = envelope_json(schema, self.station_id, seq, ts or self.clock(), body_json)
        self.conn.execute(
            "INSERT INTO outbox(seq, kind, topic, payload, created) VALUES (?, ?, ?, ?, ?)",
            (seq, kind, f"{self.base_topic}/{topic_name}", payload, time.time()),
        )
        self._last_seq = seq
        self._rows += 1
        self._bytes += len(payload)
        self._pending_rows += 1
        return seq

    def count_dropped(self, n: int) -> None:
        """Messages refused before they had a seq (the store would not take them): counted
        now, saved with the next commit that succeeds."""
        self._dropped += n

    def _save_counters(self) -> None:
        self.conn.executemany(
            "INSERT INTO uplink_counters(name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            [("last_seq", self._last_seq), ("thinned", self._thinned), ("dropped", self._dropped)],
        )

    # --- caps ---------------------------------------------------------------------------

    def _over_cap(self, fraction: float) -> bool:
        return self._rows > self.max_rows * fraction or self._bytes > self.max_bytes * fraction

    def _enforce_caps(self) -> None:
        if not self._over_cap(1.0):
            return
        while self._over_cap(HYSTERESIS):
            avg = self._bytes / max(self._rows, 1)
            need = max(
                self._rows - int(self.max_rows * HYSTERESIS),
                math.ceil((self._bytes - self.max_bytes * HYSTERESIS) / max(avg, 1.0)),
                1,
            )
            stride = self.conn.execute(
                "SELECT MIN(stride) FROM outbox WHERE kind = ?", (DROPPABLE,)
            ).fetchone()[0]
            if stride is None:
                log.warning(
                    "outbox over its cap (%d rows, %d bytes) with nothing droppable left",
                    self._rows,
                    self._bytes,
                )
                return
            if stride < self.thin_max_stride:
                self._thin(stride, need)
            else:
                self._drop_oldest(need)

    def _thin(self, stride: int, need: int) -> None:
        """Delete every other row of the oldest telemetry at `stride`; survivors stand for
        twice the samples."""
        rows = self.conn.execute(
            "SELECT seq, length(payload) FROM outbox WHERE kind = ? AND stride = ? "
            "ORDER BY seq LIMIT ?",
            (DROPPABLE, stride, 2 * need),
        ).fetchall()
        victims = rows[1::2]
        survivors = [(seq,) for seq, _ in rows[0::2]]
        self.conn.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s, _ in victims])
        self.conn.executemany(f"UPDATE outbox SET stride = {stride * 2} WHERE seq = ?", survivors)
        self._rows -= len(victims)
        self._bytes -= sum(size for _, size in victims)
        self._thinned += len(victims)

    def _drop_oldest(self, need: int) -> None:
        rows = self.conn.execute(
            "SELECT seq, length(payload) FROM outbox WHERE kind = ? ORDER BY seq LIMIT ?",
            (DROPPABLE, need),
        ).fetchall()
        self.conn.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s, _ in rows])
        self._rows -= len(rows)
        self._bytes -= sum(size for _, size in rows)
        self._dropped += len(rows)

    # --- reading and acknowledging ------------------------------------------------------

    def fetch_after(self, seq: int, limit: int) -> list[Row]:
        """The oldest rows with a seq above `seq`, in seq order."""
        return [
            Row(s, t, bytes(p), c)
            for s, t, p, c in self.conn.execute(
                "SELECT seq, topic, payload, created FROM outbox WHERE seq > ? "
                "ORDER BY seq LIMIT ?",
                (seq, limit),
            )
        ]

    def delete(self, seqs: Iterable[int]) -> int:
        """Forget acknowledged rows (one commit); rows already thinned away are ignored."""
        keys = [(s,) for s in seqs]
        if not keys:
            return 0
        with self.transaction():
            removed = 0
            for key in keys:
                got = self.conn.execute(
                    "DELETE FROM outbox WHERE seq = ? RETURNING length(payload)", key
                ).fetchone()
                if got is not None:
                    removed += 1
                    self._bytes -= int(got[0])
            self._rows -= removed
        return removed
