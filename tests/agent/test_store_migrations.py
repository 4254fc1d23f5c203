"""The store's numbered migrations: a database from an older agent opens, upgraded in
place with its rows kept; a current one is left alone; a newer one is refused."""

from __future__ import annotations

import sqlite3

import pytest

from agent.store import connect, schema

# The layout an agent wrote before numbered migrations (user_version 0): version-1 tables,
# none of the columns added since, the version kept in meta.
OLD_SESSIONS = """CREATE TABLE sessions (
    id TEXT PRIMARY KEY, charger_id TEXT NOT NULL, connector_idx INTEGER NOT NULL,
    status TEXT NOT NULL, kind TEXT NOT NULL DEFAULT 'charging',
    source TEXT NOT NULL DEFAULT 'hardware', started_at TEXT NOT NULL, stopped_at TEXT,
    energy_kwh REAL NOT NULL DEFAULT 0, discharged_kwh REAL NOT NULL DEFAULT 0,
    peak_kw REAL NOT NULL DEFAULT 0, vehicle_max_kw REAL, vehicle_id TEXT, fleet_id TEXT,
    departure TEXT, energy_target_kwh REAL, cost_eur REAL NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL)"""
OLD_LEDGER = """CREATE TABLE ledger (
    period_start TEXT NOT NULL, policy TEXT NOT NULL, interval INTEGER NOT NULL,
    import_kwh REAL NOT NULL, export_kwh REAL NOT NULL, energy_cost_eur REAL NOT NULL,
    co2_kg REAL NOT NULL, peak_kw REAL NOT NULL,
    battery_charge_kwh REAL NOT NULL DEFAULT 0, battery_discharge_kwh REAL NOT NULL DEFAULT 0,
    session_kwh TEXT NOT NULL DEFAULT '{}', v2g_kwh TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (period_start, policy, interval))"""


def _old_database(path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    conn.execute(OLD_SESSIONS)
    conn.execute(OLD_LEDGER)
    conn.execute(
        "INSERT INTO sessions (id, charger_id, connector_idx, status, started_at, energy_kwh,"
        " updated_at) VALUES ('s1', 'CP1', 1, 'active', '2026-06-01T08:00:00Z', 12.5,"
        " '2026-06-01T09:00:00Z')"
    )
    conn.commit()
    conn.close()


def _columns(db, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})").fetchall()}


def test_an_old_database_is_upgraded_in_place_and_keeps_its_rows(tmp_path):
    path = tmp_path / "old.db"
    _old_database(path)
    db = connect(path)
    assert schema.version(db) == schema.VERSION
    assert {"stop_reason", "latched", "limit_kw"} <= _columns(db, "sessions")
    assert {"pv_kwh", "soc_pct", "import_cap_kw", "import_price_eur_kwh",
            "refill_eur"} <= _columns(db, "ledger")
    assert {"outbox", "events", "signals", "fleet_sessions"} <= set(db.table_names())
    row = db.execute("SELECT id, status, energy_kwh, latched FROM sessions").fetchall()
    assert row == [("s1", "active", 12.5, 0)]
    assert db.execute("SELECT count(*) FROM meta WHERE key = 'schema_version'").fetchone()[0] == 0
    db.conn.close()
    again = connect(path)  # current: nothing to do
    assert schema.ensure(again) == schema.VERSION
    assert again.execute("SELECT count(*) FROM sessions").fetchone()[0] == 1


def test_a_fresh_database_gets_every_migration(tmp_path):
    db = connect(tmp_path / "new.db")
    assert schema.version(db) == schema.VERSION
    assert "latched" in _columns(db, "sessions")


def test_a_database_from_a_newer_agent_is_refused_with_its_versions(tmp_path):
    path = tmp_path / "newer.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {schema.VERSION + 1}")
    conn.close()
    with pytest.raises(schema.SchemaError, match=f"version {schema.VERSION + 1}"):
        connect(path)


def test_a_failing_migration_leaves_the_previous_version_whole(tmp_path, monkeypatch):
    path = tmp_path / "old.db"
    _old_database(path)

    def broken(db):
        db.execute("ALTER TABLE sessions ADD COLUMN stop_reason TEXT")
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS[:1], (2, "x", broken),
                                               *schema.MIGRATIONS[2:]))
    with pytest.raises(sqlite3.OperationalError):
        connect(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert "stop_reason" not in {r[1] for r in conn.execute("PRAGMA table_info(sessions)")}


def test_sems_run_refuses_a_newer_database_in_one_line(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    path = tmp_path / "newer.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {schema.VERSION + 1}")
    conn.close()
    example = Path(__file__).resolve().parents[2] / "config" / "agent.example.toml"
    env = {**os.environ, "SEMS_STORAGE__DB_PATH": str(path)}
    out = subprocess.run(
        [sys.executable, "-c", "from agent.cli import main; raise SystemExit(main())",
         "run", "--config", str(example)],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert out.returncode == 78, out.stderr
    assert out.stderr.strip().splitlines() == [
        f"storage.db_path: the station database is schema version {schema.VERSION + 1}, "
        f"this agent knows up to {schema.VERSION}: run the newer agent, or move the "
        "database aside"
    ]


def test_a_version_3_database_gains_the_session_limit_and_keeps_its_rows(tmp_path):
    """Migration 4 on a file an agent of version 3 wrote: an API session's row resumes with
    no stored limit (NULL), which the API station counts at the most the session may draw."""
    path = tmp_path / "v3.db"
    db = connect(path)
    db.execute("ALTER TABLE sessions DROP COLUMN limit_kw")
    db.execute("PRAGMA user_version = 3")
    db.execute("INSERT INTO sessions (id, charger_id, connector_idx, status, source, started_at,"
               " updated_at) VALUES ('a1', 'DC1', 1, 'active', 'api', 'x', 'x')")  # fmt: skip
    db.conn.close()
    again = connect(path)
    assert schema.version(again) == schema.VERSION
    assert again.execute("SELECT id, limit_kw FROM sessions").fetchall() == [("a1", None)]
