"""The fleet energy service's resources at station scope (`/api/v1/...`).

Every answer comes from this station's data: the ApiContext (live state), the store's
`sessions` table (history), the fleet records (fleet_store), the signals store (tariffs,
caps, schedules, maintenance) and the planner. Where a source is absent in this mode (no
uplink signals, no battery) the answer says so instead of inventing figures.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from agent.api import optimize
from agent.api.context import (
    ApiContext,
    ApiError,
    FieldError,
    NewSession,
    NotFound,
    NotSupported,
    SessionView,
)
from agent.api.fleet_models import (
    FleetOptimizationRequest,
    FleetSession,
    FleetSessionCreate,
    FleetSessionList,
    FleetSessionStart,
    FleetSessionUpdate,
    MaintenanceRequest,
    Optimization,
    OptimizationCreate,
    OptimizationList,
    OptimizationResults,
    VehicleSchedule,
)
from agent.api.fleet_store import FleetStore
from agent.model.clock import iso

router = APIRouter(prefix="/api/v1")

# Typed as FastAPI's parameters are, so these can be passed and merged as they are.
Tags = list[str | Enum]
Responses = dict[int | str, dict[str, Any]]
_404: Responses = {404: {"description": "Not found"}}
# sqlite-utils writes OFFSET into the SQL text: past 64 bits it becomes a REAL, which SQLite
# refuses (a 500 the fuzz test found). No station holds anywhere near this many records.
MAX_OFFSET = 1_000_000_000


def _ctx(request: Request) -> ApiContext:
    return request.app.state.ctx


def _store(request: Request) -> FleetStore:
    return FleetStore(_ctx(request).store)


def _now(request: Request) -> str:
    return iso(_ctx(request).now())


# ---------------------------------------------------------------- sessions (charging, V2G)

def _live(ctx: ApiContext) -> dict[str, SessionView]:
    return {s.session_id: s for s in ctx.sessions()}


def _session_out(rec: dict[str, Any], live: dict[str, SessionView], store: FleetStore) -> FleetSession:
    data = rec["data"]
    sess = live.get(rec["session_id"] or "")
    energy = sess.energy_kwh if sess else _recorded_energy(store, rec["session_id"])
    cap = data.get("battery_capacity_kwh")
    level = None
    if cap:
        level = min(100.0, round(data["start_level"] + energy / cap * 100.0, 2))
    return FleetSession(
        id=rec["id"], kind=rec["kind"], vehicle_id=rec["vehicle_id"], fleet_id=rec["fleet_id"],
        status=rec["status"], start_level=data["start_level"], end_level=data["end_level"],
        departure=data.get("departure"), battery_capacity_kwh=cap, max_power_kw=data.get("max_power_kw"),
        charger_id=sess.charger_id if sess else data.get("charger_id"),
        connector_idx=sess.idx if sess else data.get("connector_idx"),
        session_id=rec["session_id"], allocated_kw=sess.allocated_kw if sess else None,
        power_kw=sess.consumed_kw if sess else None, energy_kwh=round(energy, 6), current_level=level,
        created_at=rec["created_at"], updated_at=rec["updated_at"],
    )


def _recorded_energy(store: FleetStore, session_id: str | None) -> float:
    if not session_id:
        return 0.0
    row = store.db.execute(
        "SELECT energy_kwh, discharged_kwh FROM sessions WHERE id = ?", [session_id]
    ).fetchone()
    return float(row[0]) - float(row[1]) if row else 0.0


def _sync_status(ctx: ApiContext, store: FleetStore, rec: dict[str, Any], now: str) -> dict[str, Any]:
    """An active fleet session whose station session ended (EV left, config replaced) is
    completed: the station session is the source of truth."""
    if rec["status"] == "active" and rec["session_id"] not in _live(ctx):
        rec = store.update_session(rec["id"], now, status="completed")
    return rec


def _session_routes(kind: Literal["charging", "v2g"], prefix: str) -> None:
    label = "V2G" if kind == "v2g" else "charging"
    tag: Tags = [f"{label} sessions"]

    def load(request: Request, session_id: str) -> dict[str, Any]:
        store = _store(request)
        rec = store.get_session(kind, session_id)
        if rec is None:
            raise NotFound(f"unknown {label} session {session_id!r}")
        return _sync_status(_ctx(request), store, rec, _now(request))

    @router.get(prefix, response_model=FleetSessionList, tags=tag, summary=f"List {label} sessions")
    async def list_sessions(
        request: Request,
        status: Literal["scheduled", "active", "completed"] | None = None,
        vehicle_id: str | None = Query(default=None, min_length=1, max_length=64),
        fleet_id: str | None = Query(default=None, min_length=1, max_length=64),
        limit: int = Query(default=100, ge=1, le=1000),
        offset: int = Query(default=0, ge=0, le=MAX_OFFSET),
    ) -> FleetSessionList:
        ctx, store, now = _ctx(request), _store(request), _now(request)
        for rec in store.list_sessions(kind, status="active", limit=10_000):
            _sync_status(ctx, store, rec, now)
        rows = store.list_sessions(kind, vehicle_id=vehicle_id, fleet_id=fleet_id, status=status,
                                   limit=limit, offset=offset)
        live = _live(ctx)
        return FleetSessionList(sessions=[_session_out(r, live, store) for r in rows], total=len(rows))

    @router.post(prefix, response_model=FleetSession, status_code=201, tags=tag,
                 summary=f"Create a scheduled {label} session")
    async def create_session(body: FleetSessionCreate, request: Request) -> FleetSession:
        ctx, store = _ctx(request), _store(request)
        _check_connector(ctx, body.charger_id, body.connector_idx)
        data = body.model_dump(mode="json", exclude={"vehicle_id", "fleet_id"})
        rec = store.create_session(kind, body.vehicle_id, body.fleet_id, data, _now(request))
        _push_schedule(ctx, rec["id"], body.vehicle_id, body.fleet_id, data)
        return _session_out(rec, _live(ctx), store)

    @router.get(prefix + "/{session_id}", response_model=FleetSession, tags=tag, responses=_404,
                summary=f"Get a {label} session")
    async def get_session(session_id: str, request: Request) -> FleetSession:
        rec = load(request, session_id)
        return _session_out(rec, _live(_ctx(request)), _store(request))

    @router.put(prefix + "/{session_id}", response_model=FleetSession, tags=tag, responses=_404,
                summary=f"Update a {label} session")
    async def update_session(session_id: str, body: FleetSessionUpdate, request: Request) -> FleetSession:
        ctx, store = _ctx(request), _store(request)
        rec = load(request, session_id)
        data = {**rec["data"], **body.model_dump(mode="json", exclude_unset=True)}
        if data["end_level"] <= data["start_level"]:
            raise FieldError("end_level", "must be above start_level")
        if rec["status"] == "scheduled":
            _check_connector(ctx, data.get("charger_id"), data.get("connector_idx"))
        rec = store.update_session(session_id, _now(request), data=data)
        _push_schedule(ctx, rec["id"], rec["vehicle_id"], rec["fleet_id"], data)
        return _session_out(rec, _live(ctx), store)

    @router.delete(prefix + "/{session_id}", status_code=204, tags=tag, responses=_404,
                   summary=f"Delete a {label} session (stopping it first if active)")
    async def delete_session(session_id: str, request: Request) -> Response:
        ctx = _ctx(request)
        rec = load(request, session_id)
        if rec["status"] == "active":
            ctx.stop_session(rec["session_id"])
        _store(request).delete_session(session_id)
        return Response(status_code=204)

    @router.post(prefix + "/{session_id}/start", response_model=FleetSession, tags=tag,
                 responses={**_404, 409: {"description": "Not scheduled, or connector in use"}},
                 summary=f"Start a {label} session on a connector")
    async def start_session(session_id: str, request: Request, body: FleetSessionStart | None = None) -> FleetSession:
        ctx, store = _ctx(request), _store(request)
        rec = load(request, session_id)
        if rec["status"] != "scheduled":
            raise NotSupported(f"session {session_id} is {rec['status']}, not scheduled")
        data = dict(rec["data"])
        if body is not None:
            data.update(body.model_dump(exclude_none=True))
        charger_id, idx = data.get("charger_id"), data.get("connector_idx")
        if charger_id is None or idx is None:
            raise FieldError("charger_id", "a charger_id and connector_idx are needed to start")
        charger = ctx.station_config().charger(charger_id)
        vehicle_max = data.get("max_power_kw") or (charger.maxPower if charger else 0.0)
        view = ctx.create_session(NewSession(charger_id, idx, vehicle_max, kind=kind,
                                             vehicle_id=rec["vehicle_id"], fleet_id=rec["fleet_id"]))
        rec = store.update_session(session_id, _now(request), status="active", session_id=view.session_id, data=data)
        return _session_out(rec, _live(ctx), store)

    @router.post(prefix + "/{session_id}/stop", response_model=FleetSession, tags=tag,
                 responses={**_404, 409: {"description": "Not active"}}, summary=f"Stop a {label} session")
    async def stop_session(session_id: str, request: Request) -> FleetSession:
        ctx, store = _ctx(request), _store(request)
        rec = load(request, session_id)
        if rec["status"] != "active":
            raise NotSupported(f"session {session_id} is {rec['status']}, not active")
        ctx.stop_session(rec["session_id"])
        rec = store.update_session(session_id, _now(request), status="completed")
        return _session_out(rec, _live(ctx), store)


def _check_connector(ctx: ApiContext, charger_id: str | None, idx: int | None) -> None:
    if charger_id is None:
        return
    charger = ctx.station_config().charger(charger_id)
    if charger is None:
        raise ApiError(f"charger_id: unknown charger {charger_id!r}")
    if idx is not None and idx > charger.connectors:
        raise ApiError(f"connector_idx: charger {charger_id!r} has connectors 1..{charger.connectors}")


def _push_schedule(ctx: ApiContext, rec_id: str, vehicle_id: str, fleet_id: str | None,
                   data: dict[str, Any]) -> None:
    """Give the planner (through agent.store.signals) the vehicle's departure and energy target."""
    if ctx.signals is None or not data.get("departure") or not data.get("battery_capacity_kwh"):
        return
    from agent.store import signals as sig

    target = (data["end_level"] - data["start_level"]) / 100.0 * data["battery_capacity_kwh"]
    ctx.signals.add_vehicle_schedule(sig.VehicleSchedule(
        id=f"api-{rec_id}", vehicle_id=vehicle_id, departure=data["departure"],
        energy_target_kwh=min(1000.0, target), fleet_id=fleet_id, target_soc_pct=data["end_level"],
    ))


_session_routes("charging", "/charging/sessions")
_session_routes("v2g", "/v2g/sessions")


# ---------------------------------------------------------------- optimisation

def _opt_out(rec: dict[str, Any]) -> Optimization:
    return Optimization(**{k: rec[k] for k in ("id", "type", "status", "params", "error", "created_at", "updated_at")})


def _load_opt(request: Request, opt_id: str) -> dict[str, Any]:
    rec = _store(request).get_optimization(opt_id)
    if rec is None:
        raise NotFound(f"unknown optimization {opt_id!r}")
    return rec


async def _run_opt(request: Request, rec: dict[str, Any]) -> dict[str, Any]:
    result, error = await optimize.run(_ctx(request), rec)
    return _store(request).finish_optimization(rec["id"], _now(request), result=result, error=error)


@router.get("/optimization", response_model=OptimizationList, tags=["optimization"], summary="List optimizations")
async def list_optimizations(request: Request, limit: int = Query(default=100, ge=1, le=1000),
                             offset: int = Query(default=0, ge=0, le=MAX_OFFSET)) -> OptimizationList:
    rows = _store(request).list_optimizations(limit, offset)
    return OptimizationList(optimizations=[_opt_out(r) for r in rows], total=len(rows))


@router.post("/optimization", response_model=Optimization, status_code=201, tags=["optimization"],
             summary="Create an optimization (run it with /run)")
async def create_optimization(body: OptimizationCreate, request: Request) -> Optimization:
    rec = _store(request).create_optimization(body.type, body.model_dump(exclude={"type"}), _now(request))
    return _opt_out(rec)


@router.get("/optimization/{opt_id}", response_model=Optimization, tags=["optimization"], responses=_404)
async def get_optimization(opt_id: str, request: Request) -> Optimization:
    return _opt_out(_load_opt(request, opt_id))


@router.post("/optimization/{opt_id}/run", response_model=Optimization, tags=["optimization"], responses=_404,
             summary="Run the planner for this optimization")
async def run_optimization(opt_id: str, request: Request) -> Optimization:
    return _opt_out(await _run_opt(request, _load_opt(request, opt_id)))


@router.get("/optimization/{opt_id}/results", response_model=OptimizationResults, tags=["optimization"],
            responses=_404)
async def optimization_results(opt_id: str, request: Request) -> OptimizationResults:
    rec = _load_opt(request, opt_id)
    return OptimizationResults(id=rec["id"], status=rec["status"], result=rec["result"], error=rec["error"])


# ---------------------------------------------------------------- grid

@router.get("/grid/status", tags=["grid"], summary="Grid connection: capacity, import, headroom, cap")
async def grid_status(request: Request) -> dict[str, Any]:
    view = _ctx(request).station_view()
    limit = view.grid_capacity_kw if view.power_cap_kw is None else min(view.grid_capacity_kw, view.power_cap_kw)
    return {
        "ts": view.ts, "capacity_kw": view.grid_capacity_kw, "power_cap_kw": view.power_cap_kw,
        "import_kw": view.grid_power_kw,
        "headroom_kw": None if view.grid_power_kw is None else round(limit - view.grid_power_kw, 3),
        "metered": view.grid_power_kw is not None, "degraded": list(view.degraded),
    }


@router.get("/grid/price", tags=["grid"], summary="Import/export price now and the demand charge")
async def grid_price(request: Request) -> dict[str, Any]:
    ctx = _ctx(request)
    now = ctx.now()
    slot = ctx.signals.price_at(now) if ctx.signals is not None else None
    if slot is None:
        return {"ts": iso(now), "known": False, "import_eur_kwh": None, "export_eur_kwh": None,
                "demand_charge_eur_kw": None}
    return {"ts": iso(now), "known": True, "import_eur_kwh": slot.import_eur_kwh,
            "export_eur_kwh": slot.export_eur_kwh, "slot_start": iso(slot.start), "slot_end": iso(slot.end),
            "demand_charge_eur_kw": ctx.signals.demand_charge_eur_kw(now)}  # type: ignore[union-attr]


@router.get("/grid/demand", tags=["grid"], summary="Station demand now: base load and EVs")
async def grid_demand(request: Request) -> dict[str, Any]:
    view = _ctx(request).station_view()
    return {"ts": view.ts, "base_load_kw": view.base_load_kw, "ev_power_kw": view.ev_power_kw,
            "grid_import_kw": view.grid_power_kw,
            "sessions": sum(1 for c in view.connectors if c.session_id)}


@router.get("/grid/supply", tags=["grid"], summary="Power available: grid, PV, battery")
async def grid_supply(request: Request) -> dict[str, Any]:
    ctx = _ctx(request)
    view = ctx.station_view()
    battery = ctx.battery() or {}
    return {"ts": view.ts, "grid_capacity_kw": view.grid_capacity_kw, "power_cap_kw": view.power_cap_kw,
            "pv_kw": view.pv_power_kw, "battery_soc": view.battery_soc,
            "battery_power_kw": view.battery_power_kw,
            "battery_max_discharge_kw": battery.get("max_discharge_kw")}


# ---------------------------------------------------------------- battery

@router.get("/battery/health", tags=["battery"], summary="Stationary battery: SoC, SoH, cycles, alerts")
async def battery_health(request: Request) -> dict[str, Any]:
    battery = _ctx(request).battery()
    if battery is None:
        return {"present": False}
    return {"present": True, **battery}


@router.post("/battery/optimization", response_model=Optimization, tags=["battery"],
             summary="Plan the battery's dispatch now (runs a 'battery' optimization)")
async def battery_optimization(request: Request, body: FleetOptimizationRequest | None = None) -> Optimization:
    params = (body or FleetOptimizationRequest()).model_dump()
    rec = _store(request).create_optimization("battery", params, _now(request))
    return _opt_out(await _run_opt(request, rec))


@router.post("/battery/maintenance", status_code=201, tags=["battery"],
             responses={503: {"description": "No signals store in this mode"}},
             summary="Schedule a maintenance window (battery out of dispatch)")
async def battery_maintenance(body: MaintenanceRequest, request: Request) -> Any:
    ctx = _ctx(request)
    if ctx.signals is None:
        return JSONResponse(status_code=503, content={"error": "maintenance windows need the agent's signals store, absent in this mode"})
    from agent.store import signals as sig

    window = ctx.signals.add_battery_maintenance(sig.BatteryMaintenance(
        id=str(uuid.uuid4()), kind=body.kind, start=body.start, end=body.end, target_soc_pct=body.target_soc_pct))
    return {"scheduled": True, **window.model_dump(mode="json")}


# ---------------------------------------------------------------- fleet and vehicles

Owner = Literal["fleet_id", "vehicle_id"]


def _energy(ctx: ApiContext, column: Owner, value: str) -> dict[str, Any]:
    row = ctx.store.execute(
        f"SELECT COUNT(*), COALESCE(SUM(energy_kwh),0), COALESCE(SUM(discharged_kwh),0), "
        f"COALESCE(MAX(peak_kw),0), COALESCE(SUM(cost_eur),0) FROM sessions WHERE {column} = ?",  # noqa: S608 (column is ours)
        [value],
    ).fetchone()
    live = [s for s in ctx.sessions() if getattr(s, column) == value]
    return {
        column: value,
        "sessions": row[0], "energy_charged_kwh": round(row[1], 6),
        "energy_discharged_kwh": round(row[2], 6), "peak_kw": row[3], "cost_eur": round(row[4], 4),
        "active_sessions": len(live), "power_kw": round(sum(s.consumed_kw or 0.0 for s in live), 3),
        "allocated_kw": round(sum(s.allocated_kw for s in live), 3),
    }


def _kind_status(request: Request, kind: str, column: Owner, value: str) -> dict[str, Any]:
    ctx, store = _ctx(request), _store(request)
    live = _live(ctx)
    if column == "fleet_id":
        recs = store.list_sessions(kind, fleet_id=value, limit=1000)
    else:
        recs = store.list_sessions(kind, vehicle_id=value, limit=1000)
    recs = [_sync_status(ctx, store, r, _now(request)) for r in recs]
    active_station = [s for s in ctx.sessions() if getattr(s, column) == value and s.kind == kind]
    return {
        column: value,
        "active": [_session_view(s) for s in active_station],
        "scheduled": [_session_out(r, live, store).model_dump(mode="json") for r in recs if r["status"] == "scheduled"],
        "power_kw": round(sum(s.consumed_kw or 0.0 for s in active_station), 3),
    }


def _session_view(s: SessionView) -> dict[str, Any]:
    return {"session_id": s.session_id, "charger_id": s.charger_id, "connector_idx": s.idx,
            "allocated_kw": s.allocated_kw, "power_kw": s.consumed_kw, "energy_kwh": s.energy_kwh,
            "cost_eur": s.cost_eur,
            "binding": s.binding, "started_at": s.started_at, "vehicle_id": s.vehicle_id, "fleet_id": s.fleet_id}


IdPath = str


def _owner_routes(prefix: str, column: Owner, name: str, energy_summary: str | None = None) -> None:
    """`/{prefix}/{column}/energy`, `/charging` and `/v2g` for one owner of sessions (a fleet
    or a vehicle). Route names keep the operation ids (`fleet_energy`, `vehicle_v2g`, ...)."""
    tags: Tags = [prefix]
    path = f"/{prefix}/{{{column}}}"
    owner_id = Path(alias=column)  # one parameter object, named as in the path

    @router.get(path + "/energy", tags=tags, name=f"{name}_energy", summary=energy_summary)
    async def energy(request: Request, owner: IdPath = owner_id) -> dict[str, Any]:
        return _energy(_ctx(request), column, owner)

    @router.get(path + "/charging", tags=tags, name=f"{name}_charging")
    async def charging(request: Request, owner: IdPath = owner_id) -> dict[str, Any]:
        return _kind_status(request, "charging", column, owner)

    @router.get(path + "/v2g", tags=tags, name=f"{name}_v2g")
    async def v2g(request: Request, owner: IdPath = owner_id) -> dict[str, Any]:
        return _kind_status(request, "v2g", column, owner)


_owner_routes("fleet", "fleet_id", "fleet", "Energy of a fleet at this station")


@router.post("/fleet/{fleet_id}/optimization", response_model=Optimization, tags=["fleet"],
             summary="Plan this fleet's sessions at the station (runs a 'fleet' optimization)")
async def fleet_optimization(fleet_id: IdPath, request: Request,
                             body: FleetOptimizationRequest | None = None) -> Optimization:
    params = {**(body or FleetOptimizationRequest()).model_dump(), "fleet_id": fleet_id}
    rec = _store(request).create_optimization("fleet", params, _now(request))
    return _opt_out(await _run_opt(request, rec))


_owner_routes("vehicles", "vehicle_id", "vehicle")


@router.post("/vehicles/{vehicle_id}/schedule", status_code=201, tags=["vehicles"],
             responses={503: {"description": "No signals store in this mode"}},
             summary="Departure and energy target of a vehicle (planner input)")
async def vehicle_schedule(vehicle_id: IdPath, body: VehicleSchedule, request: Request) -> Any:
    ctx = _ctx(request)
    if ctx.signals is None:
        return JSONResponse(status_code=503, content={"error": "vehicle schedules need the agent's signals store, absent in this mode"})
    from agent.store import signals as sig

    schedule = ctx.signals.add_vehicle_schedule(sig.VehicleSchedule(
        id=str(uuid.uuid4()), vehicle_id=vehicle_id, departure=body.departure,
        energy_target_kwh=body.energy_target_kwh, fleet_id=body.fleet_id, target_soc_pct=body.target_soc_pct))
    return {"scheduled": True, **schedule.model_dump(mode="json")}


# ---------------------------------------------------------------- analytics

def _window(ctx: ApiContext, start: datetime | None, end: datetime | None) -> tuple[str, str]:
    end = end or ctx.now()
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    try:  # a date at the edge of the calendar (year 1 or 9999) cannot be shifted or converted
        start = start or end - timedelta(days=1)
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        if end <= start:
            raise ApiError("end: must be after start")
        return iso(start), iso(end)
    except OverflowError:
        raise ApiError("start: the window must lie between the years 1 and 9999 in UTC") from None


@router.get("/analytics/energy-usage", tags=["analytics"], summary="Energy delivered by session kind over a window")
async def energy_usage(request: Request, start: datetime | None = None, end: datetime | None = None) -> dict[str, Any]:
    ctx = _ctx(request)
    a, b = _window(ctx, start, end)
    rows = ctx.store.execute(
        "SELECT kind, COUNT(*), COALESCE(SUM(energy_kwh),0), COALESCE(SUM(discharged_kwh),0) "
        "FROM sessions WHERE started_at < ? AND COALESCE(stopped_at, ?) >= ? GROUP BY kind", [b, b, a]
    ).fetchall()
    by_kind = {k: {"sessions": n, "charged_kwh": round(e, 6), "discharged_kwh": round(d, 6)} for k, n, e, d in rows}
    return {"start": a, "end": b, "by_kind": by_kind,
            "total_charged_kwh": round(sum(v["charged_kwh"] for v in by_kind.values()), 6),
            "total_discharged_kwh": round(sum(v["discharged_kwh"] for v in by_kind.values()), 6)}


@router.get("/analytics/cost-analysis", tags=["analytics"], summary="Charging cost over a window")
async def cost_analysis(request: Request, start: datetime | None = None, end: datetime | None = None) -> dict[str, Any]:
    ctx = _ctx(request)
    a, b = _window(ctx, start, end)
    row = ctx.store.execute(
        "SELECT COUNT(*), COALESCE(SUM(cost_eur),0), COALESCE(SUM(energy_kwh),0) FROM sessions "
        "WHERE started_at < ? AND COALESCE(stopped_at, ?) >= ?", [b, b, a]
    ).fetchone()
    n, cost, energy = row
    return {"start": a, "end": b, "sessions": n, "cost_eur": round(cost, 4), "energy_kwh": round(energy, 6),
            "eur_per_kwh": round(cost / energy, 4) if energy > 0 else None}


@router.get("/analytics/efficiency", tags=["analytics"], summary="Charging and V2G efficiency")
async def efficiency(request: Request) -> dict[str, Any]:
    ledger = _ctx(request).savings()
    if ledger is None:
        return {"known": False, "reason": "no savings ledger in this mode"}
    return {"known": True, **{k: ledger.get(k) for k in ("charging_efficiency", "v2g_efficiency") if k in ledger}}


@router.get("/analytics/savings", tags=["analytics"], summary="Savings against the uncontrolled counterfactual")
async def savings(request: Request) -> dict[str, Any]:
    ledger = _ctx(request).savings()
    if ledger is None:
        return {"known": False, "reason": "no savings ledger in this mode"}
    return {"known": True, **ledger}


# ---------------------------------------------------------------- health

@router.get("/health", tags=["health"], summary="Each dependency's state: devices, broker, store",
            responses={503: {"description": "A dependency is down"}})
async def health(request: Request) -> JSONResponse:
    deps = _ctx(request).dependencies()
    states = {d.state for d in deps}
    overall = "down" if "down" in states else "degraded" if "degraded" in states else "ok"
    body = {"status": overall, "dependencies": {d.name: {"state": d.state, "detail": d.detail} for d in deps}}
    return JSONResponse(status_code=503 if overall == "down" else 200, content=body)
