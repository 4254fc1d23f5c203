"""The disk full: the agent's store capped (`[storage] max_pages`, SQLite max_page_count)
and then filled from outside, as another process filling the partition would. The agent
keeps controlling power, reports the store error in its health, and catches up on the
session records once space returns."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from .harness import Scenario

pytestmark = pytest.mark.timeout(60)
MAX_PAGES = 400


def fill(db_path, pages: int) -> None:
    """Fill the store up to its cap, as the agent sees it: the file grown to `pages` with
    a filler table, then the agent's own tables topped up until an insert finds no room
    (an append needs a new page then, which the cap refuses, as a full disk would)."""
    with sqlite3.connect(db_path, timeout=5, isolation_level=None) as conn:
        conn.execute(f"PRAGMA max_page_count = {pages}")
        conn.execute("CREATE TABLE IF NOT EXISTS filler (blob BLOB)")
        rows = {
            "filler": ("INSERT INTO filler VALUES (randomblob(?))", lambda n: (3000 // (1 + n % 50),)),
            "events": ("INSERT INTO events (ts, kind, data) VALUES ('', 'filler', ?)",
                       lambda n: ("x" * (n % 40),)),
            "sessions": ("INSERT INTO sessions (id, charger_id, connector_idx, status, "
                         "started_at, updated_at) VALUES (?, 'filler', 0, 'filler', '', '')",
                         lambda n: (f"filler-{n}",)),
        }  # fmt: skip
        n = 0
        for sql, args in rows.values():
            refused = 0
            while refused < 20:  # bounded: every success takes room in a capped file
                n += 1
                try:
                    conn.execute(sql, args(n))
                    refused = 0
                except sqlite3.OperationalError as exc:
                    assert "full" in str(exc), exc
                    refused += 1


def free(db_path) -> None:
    with sqlite3.connect(db_path, timeout=5, isolation_level=None) as conn:
        conn.execute("DELETE FROM filler")  # its pages go to the free list, reusable
        conn.execute("DELETE FROM events WHERE kind = 'filler'")
        conn.execute("DELETE FROM sessions WHERE status = 'filler'")


def sessions(db_path) -> list[tuple[str, str]]:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT id, status FROM sessions WHERE status != 'filler'").fetchall()


def test_disk_full_control_goes_on_and_records_catch_up(tmp_path):
    async def scenario() -> None:
        extra = {"storage": {"max_pages": MAX_PAGES}}
        async with Scenario(tmp_path, extra=extra) as sc:
            sc.sim.set(base_load_kw=20.0, pv_kw=0.0)
            await sc.start_agent()
            db = sc.agent.db_path
            await asyncio.to_thread(fill, db, MAX_PAGES)  # the simulator keeps answering
            sc.ev("CP1", 1, 50.0)  # session starts the store cannot record
            sc.ev("CP2", 1, 22.0)
            await sc.agent.wait_log(r"ERROR .*store refuses session writes \(database or disk is full\)")
            sc.sim.inject("meter", "silent")  # a degraded-mode event the store cannot log either
            await sc.agent.wait_log(r"ERROR .*store refuses the event log .*events kept")
            sc.sim.clear("meter")
            await sc.wait_for(lambda: sc.sim.state()["gridImport"] > 50.0, 10, "capacity in use")
            await sc.run_for(2.0)
            deps = (await sc.health())["dependencies"]
            assert deps["store"]["state"] == "degraded", deps
            assert "database or disk is full" in deps["store"]["detail"]
            assert deps["control"]["state"] in ("ok", "degraded")  # still cycling
            assert sessions(db) == []
            sc.check_invariants()

            await asyncio.to_thread(free, db)  # space returns
            await sc.agent.wait_log(r"INFO .*store writable again")
            await sc.wait_for(lambda: len(sessions(db)) == 2, 5, "session rows")
            assert {status for _, status in sessions(db)} == {"active"}
            assert len(sc.events("session_started")) == 2
            await sc.agent.wait_log(r"INFO .*store writable again: event log caught up")
            assert '{"mode": "grid_meter_stale"}' in [e["data"] for e in sc.events("degraded_on")]
            await asyncio.sleep(0.3)
            assert (await sc.health())["dependencies"]["store"]["state"] == "ok"
            sc.check_invariants()
            assert await sc.agent.stop() == 0  # shutdown flushes the sessions

    asyncio.run(scenario())

