"""Every table of the station database. Additive changes only: ALTER/CREATE IF NOT EXISTS."""

from __future__ import annotations

import sqlite_utils

VERSION = 1

TABLES = (
    # Key/value facts that must survive restarts (config version, started_at, ...).
    """CREATE TABLE IF NOT EXISTS meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    # One row per charging (or V2G) session; energy from the charger's session counter.
    """CREATE TABLE IF NOT EXISTS sessions (
        id TEXT PRIMARY KEY,
        charger_id TEXT NOT NULL,
        connector_idx INTEGER NOT NULL,
        status TEXT NOT NULL,              -- active | stopped
        kind TEXT NOT NULL DEFAULT 'charging',  -- charging | v2g
        source TEXT NOT NULL DEFAULT 'hardware', -- hardware | api
        started_at TEXT NOT NULL,
        stopped_at TEXT,
        energy_kwh REAL NOT NULL DEFAULT 0,
        discharged_kwh REAL NOT NULL DEFAULT 0,
        peak_kw REAL NOT NULL DEFAULT 0,
        vehicle_max_kw REAL,
        vehicle_id TEXT,
        fleet_id TEXT,
        departure TEXT,
        energy_target_kwh REAL,
        cost_eur REAL NOT NULL DEFAULT 0,
        updated_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS sessions_active ON sessions(status, charger_id, connector_idx)",
    # Append-only event log (session started/stopped, device offline, degraded mode, ...).
    """CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts TEXT NOT NULL,
        kind TEXT NOT NULL,
        session_id TEXT,
        data TEXT NOT NULL DEFAULT '{}'
    )""",
)


def ensure(db: sqlite_utils.Database) -> None:
    """Create missing tables; cheap when they exist, so every connection calls it."""
    with db.conn:
        for statement in TABLES:
            db.execute(statement)
        db.execute(
            "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", [str(VERSION)]
        )
