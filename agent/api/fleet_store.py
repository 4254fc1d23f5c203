"""Records the fleet resources own: scheduled charging/V2G sessions and optimisation runs.

A fleet session is an intent (vehicle, fleet, levels, departure) that may exist before the
vehicle plugs in; once started it points at a real station session (`sessions` table,
created through the ApiContext) by `session_id`, which holds energy and power. Nothing here
duplicates the station session store: live figures are always read from there.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import sqlite_utils

# The tables (fleet_sessions, optimizations) are declared with every other table in
# agent/store/schema.py and created by agent.store.connect().


_READY: set[int] = set()


def ensure(db: sqlite_utils.Database) -> None:
    """For a database opened without agent.store.connect() (a bare sqlite_utils handle);
    once per handle, as FleetStore is built per request."""
    if id(db) in _READY:
        return
    from agent.store import schema

    schema.ensure(db)
    _READY.add(id(db))


def _row(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in ("data", "params", "result"):
        if key in out and isinstance(out[key], str):
            out[key] = json.loads(out[key])
    return out


class FleetStore:
    def __init__(self, db: sqlite_utils.Database) -> None:
        ensure(db)
        self.db = db

    # --- fleet sessions ---
    def create_session(
        self, kind: str, vehicle_id: str, fleet_id: str, data: dict[str, Any], now: str
    ) -> dict[str, Any]:
        rec = {
            "id": str(uuid.uuid4()),
            "kind": kind,
            "vehicle_id": vehicle_id,
            "fleet_id": fleet_id,
            "status": "scheduled",
            "data": json.dumps(data),
            "session_id": None,
            "created_at": now,
            "updated_at": now,
        }
        self.db.table("fleet_sessions").insert(rec)
        return _row(rec)

    def get_session(self, kind: str, session_id: str) -> dict[str, Any] | None:
        rows = list(self.db.table("fleet_sessions").rows_where("id = ? AND kind = ?", [session_id, kind]))
        return _row(rows[0]) if rows else None

    def list_sessions(
        self,
        kind: str | None = None,
        *,
        vehicle_id: str | None = None,
        fleet_id: str | None = None,
        status: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        where, args = ["1 = 1"], []
        for column, value in (
            ("kind", kind),
            ("vehicle_id", vehicle_id),
            ("fleet_id", fleet_id),
            ("status", status),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        rows = self.db.table("fleet_sessions").rows_where(
            " AND ".join(where), args, order_by="created_at, id", limit=limit, offset=offset
        )
        return [_row(r) for r in rows]

    def update_session(self, rec_id: str, now: str, **fields: Any) -> dict[str, Any]:
        if "data" in fields:
            fields["data"] = json.dumps(fields["data"])
        self.db.table("fleet_sessions").update(rec_id, {**fields, "updated_at": now})
        return _row(self.db.table("fleet_sessions").get(rec_id))

    def delete_session(self, session_id: str) -> None:
        self.db.table("fleet_sessions").delete(session_id)

    # --- optimisation runs ---
    def create_optimization(self, type_: str, params: dict[str, Any], now: str) -> dict[str, Any]:
        rec = {
            "id": str(uuid.uuid4()),
            "type": type_,
            "status": "created",
            "params": json.dumps(params),
            "result": None,
            "error": None,
            "created_at": now,
            "updated_at": now,
        }
        self.db.table("optimizations").insert(rec)
        return _row(rec)

    def get_optimization(self, opt_id: str) -> dict[str, Any] | None:
        rows = list(self.db.table("optimizations").rows_where("id = ?", [opt_id]))
        return _row(rows[0]) if rows else None

    def list_optimizations(self, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        rows = self.db.table("optimizations").rows_where(
            order_by="created_at, id", limit=limit, offset=offset
        )
        return [_row(r) for r in rows]

    def finish_optimization(
        self, opt_id: str, now: str, *, result: dict[str, Any] | None, error: str | None
    ) -> dict[str, Any]:
        self.db.table("optimizations").update(
            opt_id,
            {
                "status": "completed" if error is None else "failed",
                "result": None if result is None else json.dumps(result),
                "error": error,
                "updated_at": now,
            },
        )
        return _row(self.db.table("optimizations").get(opt_id))

    def optimization_counts(self) -> list[tuple[str, str, int]]:
        return [
            (r[0], r[1], r[2])
            for r in self.db.execute(
                "SELECT type, status, COUNT(*) FROM optimizations GROUP BY type, status"
            )
        ]
