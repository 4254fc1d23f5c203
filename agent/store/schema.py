"""Every table of the station database and the numbered migrations that build it.

The database's `PRAGMA user_version` is the number of the last migration applied; opening
it applies the ones after, in order, each in its own transaction with the version bump,
so a crash mid-upgrade leaves the previous version whole. A database from before numbered
migrations (user_version 0, tables possibly there) goes through all of them: they are
written to be idempotent on such a file (CREATE IF NOT EXISTS, a column added only when
missing). A database newer than this agent is refused with a message saying so.
"""

from __future__ import annotations

import sqlite_utils

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
    # Savings ledger (agent.energy.savings): one row per billing interval and policy ('actual' or
    # the 'uncontrolled' counterfactual); session_kwh / v2g_kwh are JSON {sessionId: kWh}.
    """CREATE TABLE IF NOT EXISTS ledger (
        period_start TEXT NOT NULL,
        policy TEXT NOT NULL,
        interval INTEGER NOT NULL,
        import_kwh REAL NOT NULL,
        export_kwh REAL NOT NULL,
        energy_cost_eur REAL NOT NULL,
        co2_kg REAL NOT NULL,
        peak_kw REAL NOT NULL,
        battery_charge_kwh REAL NOT NULL DEFAULT 0,
        battery_discharge_kwh REAL NOT NULL DEFAULT 0,
        session_kwh TEXT NOT NULL DEFAULT '{}',
        v2g_kwh TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (period_start, policy, interval)
    )""",
    # Append-only event log (session started/stopped, device offline, degraded mode, ...).
    """CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts TEXT NOT NULL,
        kind TEXT NOT NULL,
        session_id TEXT,
        data TEXT NOT NULL DEFAULT '{}'
    )""",
    # Uplink outbox: every uplink message is committed here (exact bytes) before it is
    # published; deleted only after a successful PUBACK. seq is the station's sequence.
    """CREATE TABLE IF NOT EXISTS outbox (
        seq INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,                -- telemetry | sessions | health | savings | reply
        topic TEXT NOT NULL,
        payload BLOB NOT NULL,
        stride INTEGER NOT NULL DEFAULT 1, -- telemetry thinning: samples this row stands for
        created REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS outbox_kind ON outbox(kind, stride, seq)",
    # Uplink counters that must survive restarts: next seq, drop counts.
    """CREATE TABLE IF NOT EXISTS uplink_counters (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    )""",
    # Cloud commands already handled, with their reply, so a repeated id does nothing twice.
    """CREATE TABLE IF NOT EXISTS uplink_commands (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        received REAL NOT NULL,
        reply BLOB NOT NULL
    )""",
    # Grid signals and schedules set by cloud commands (agent.store.signals): caps, tariffs, ...
    """CREATE TABLE IF NOT EXISTS signals (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        start TEXT,
        end TEXT,
        data TEXT NOT NULL,
        created TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS signals_kind ON signals(kind, end)",
    # Local API (agent/api/fleet_store.py): fleet sessions, the scheduled intent of a charging
    # or V2G session that points at its `sessions` row once started; optimisation runs.
    """CREATE TABLE IF NOT EXISTS fleet_sessions (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,                 -- charging | v2g
        vehicle_id TEXT NOT NULL,
        fleet_id TEXT NOT NULL,
        status TEXT NOT NULL,               -- scheduled | active | completed
        data TEXT NOT NULL,                 -- levels, departure, capacity, connector (JSON)
        session_id TEXT,                    -- the station session once started
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS fleet_sessions_vehicle ON fleet_sessions(vehicle_id, kind)",
    "CREATE INDEX IF NOT EXISTS fleet_sessions_fleet ON fleet_sessions(fleet_id, kind)",
    """CREATE TABLE IF NOT EXISTS optimizations (
        id TEXT PRIMARY KEY,
        type TEXT NOT NULL,                 -- charging | v2g | battery | fleet | cost | peak
        status TEXT NOT NULL,               -- created | running | completed | failed
        params TEXT NOT NULL,
        result TEXT,
        error TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
)


# Columns added to tables after version 1: (table, column, declaration).
V2_COLUMNS = (
    # what a ledger interval looked like (for `sems report`; NULL when unknown or older rows):
    ("ledger", "pv_kwh", "REAL"),  # PV energy produced
    ("ledger", "soc_pct", "REAL"),  # stationary battery SoC at the interval's end
    ("ledger", "import_cap_kw", "REAL"),  # lowest import cap in force (grid or DR cap)
    ("ledger", "import_price_eur_kwh", "REAL"),  # import price the interval was billed at
    # why a session ended (unplugged, cloud, api, ...), and 1 while its stop on request
    # keeps the connector at 0 kW until the EV is unplugged (agent.control.sessions: the latch)
    ("sessions", "stop_reason", "TEXT"),
    ("sessions", "latched", "INTEGER NOT NULL DEFAULT 0"),
)


class SchemaError(RuntimeError):
    """The database cannot be used by this agent (written by a newer one)."""


def _v1_tables(db: sqlite_utils.Database) -> None:
    for statement in TABLES:
        db.execute(statement)


def _v2_columns(db: sqlite_utils.Database) -> None:
    for table, column, declaration in V2_COLUMNS:
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})").fetchall()}
        if column not in have:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")


def _v3_drop_meta_version(db: sqlite_utils.Database) -> None:
    # The version lived in meta.schema_version before user_version; one source of truth.
    db.execute("DELETE FROM meta WHERE key = 'schema_version'")


def _v4_session_limit(db: sqlite_utils.Database) -> None:
    # The limit last handed out for a session: an API session's allocation, which the
    # integration keeps applying while the agent is down, so a restart counts it in the
    # budget from the first cycle (agent.app.virtual_station).
    have = {row[1] for row in db.execute("PRAGMA table_info(sessions)").fetchall()}
    if "limit_kw" not in have:
        db.execute("ALTER TABLE sessions ADD COLUMN limit_kw REAL")


def _v5_ledger_refill(db: sqlite_utils.Database) -> None:
    # What refilling the stationary battery to the billing day's starting energy cost
    # (agent.energy.savings.refill_cost): on the 'actual' row of the day's last recorded
    # interval when the day closed, 0 when nothing was short; NULL on every other row, on
    # rows written before and when the battery was unknown.
    have = {row[1] for row in db.execute("PRAGMA table_info(ledger)").fetchall()}
    if "refill_eur" not in have:
        db.execute("ALTER TABLE ledger ADD COLUMN refill_eur REAL")


# Migration n brings a database from version n-1 to n. Append only; never edit one that shipped.
MIGRATIONS = (
    (1, "tables", _v1_tables),
    (2, "ledger interval facts, session stop reason and latch", _v2_columns),
    (3, "schema version in PRAGMA user_version only", _v3_drop_meta_version),
    (4, "session limit handed out (API sessions resume with it)", _v4_session_limit),
    (5, "ledger: the billing day's battery refill", _v5_ledger_refill),
)
VERSION = MIGRATIONS[-1][0]


def version(db: sqlite_utils.Database) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def ensure(db: sqlite_utils.Database) -> int:
    """Apply the migrations the database lacks; cheap when it is current, so every
    connection calls it. Returns the version found before."""
    found = version(db)
    if found > VERSION:
        raise SchemaError(
            f"the station database is schema version {found}, this agent knows up to "
            f"{VERSION}: run the newer agent, or move the database aside"
        )
    conn = db.conn
    while version(db) < VERSION:
        # Explicit: the store's connections run in autocommit mode. IMMEDIATE takes the
        # write lock first, so a second process opening the file meanwhile waits, then
        # sees the new version and applies nothing twice.
        own = not conn.in_transaction
        if own:
            conn.execute("BEGIN IMMEDIATE")
        try:
            current = version(db)
            if current < VERSION:
                number, _, migrate = MIGRATIONS[current]
                migrate(db)
                conn.execute(f"PRAGMA user_version = {number}")
            if own:
                conn.execute("COMMIT")
        except BaseException:
            if own:
                conn.execute("ROLLBACK")
            raise
    return found
