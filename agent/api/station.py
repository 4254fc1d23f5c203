"""sems-edge's own read-outs for the technician CLI (`sems status`, `devices`, `sessions`,
`outbox`): the full station picture that Electra's shapes have no room for."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from agent.api.context import ApiContext, as_dict

router = APIRouter(prefix="/api/v1", tags=["station (sems-edge)"])


def _ctx(request: Request) -> ApiContext:
    return request.app.state.ctx


@router.get("/station", summary="Live station picture: grid, battery, PV, every connector, uplink")
async def station(request: Request) -> dict[str, Any]:
    ctx = _ctx(request)
    uplink = ctx.uplink()
    return {**as_dict(ctx.station_view()), "uplink": as_dict(uplink) if uplink else None}


@router.get("/station/sessions", summary="Active sessions with limits, power, energy and binding")
async def active_sessions(request: Request) -> dict[str, Any]:
    return {"sessions": [as_dict(s) for s in _ctx(request).sessions()]}


@router.get("/station/history", summary="Recent sessions from the store, newest first")
async def session_history(request: Request, limit: int = Query(default=50, ge=1, le=1000)) -> dict[str, Any]:
    rows = _ctx(request).store.execute(
        "SELECT id, charger_id, connector_idx, status, kind, source, started_at, stopped_at, "
        "energy_kwh, discharged_kwh, peak_kw, vehicle_id, fleet_id FROM sessions "
        "ORDER BY started_at DESC, id LIMIT ?", [limit]
    )
    cols = [d[0] for d in rows.description]
    return {"sessions": [dict(zip(cols, r, strict=True)) for r in rows.fetchall()]}


@router.get("/devices", summary="Each device's link state, latency, errors and last error")
async def devices(request: Request) -> dict[str, Any]:
    return {"devices": [as_dict(d) for d in _ctx(request).devices()]}


@router.get("/plan", summary="The rolling plan guiding the control loop, slot by slot from now")
async def plan(request: Request) -> dict[str, Any]:
    return {"plan": _ctx(request).plan_view()}


@router.get("/uplink", summary="Uplink connection and outbox state")
async def uplink(request: Request) -> dict[str, Any]:
    ctx = _ctx(request)
    view = ctx.uplink()
    by_kind: list[dict[str, Any]] = []
    if ctx.store["outbox"].exists():
        rows = ctx.store.execute(
            "SELECT kind, COUNT(*), MIN(seq), MAX(seq), COALESCE(SUM(LENGTH(payload)),0) "
            "FROM outbox GROUP BY kind ORDER BY kind"
        ).fetchall()
        by_kind = [{"kind": k, "rows": n, "oldest_seq": lo, "newest_seq": hi, "bytes": b}
                   for k, n, lo, hi, b in rows]
    return {"configured": view is not None, **(as_dict(view) if view else {}), "by_kind": by_kind}
