"""One way to open the station database, with the pragmas set on every connection.

Every table the agent keeps is declared in `agent.store.schema`, so a reader finds the
whole persistent state in one place and a restart always sees the same layout.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlite_utils

from agent.store import schema

# WAL lets the uplink read the outbox while the control loop appends; synchronous=FULL
# makes a committed session event or outbox row survive power loss (eMMC, no UPS).
PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
)


def connect(
    path: str | Path, *, check_same_thread: bool = True, max_pages: int | None = None
) -> sqlite_utils.Database:
    """Open (creating if needed) the store at `path` (":memory:" for tests) with its schema.
    `max_pages`: a full disk, simulated (writes that need more pages fail as on ENOSPC)."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=check_same_thread, isolation_level=None)
    for pragma in PRAGMAS:
        conn.execute(pragma)
    db = sqlite_utils.Database(conn)
    schema.ensure(db)
    if max_pages is not None:
        conn.execute(f"PRAGMA max_page_count = {int(max_pages)}")
    return db
