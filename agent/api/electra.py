"""Electra SEMS's endpoints, with its exact request and response shapes.

`/health`, `/station/config` (GET, POST), `/station/status`, `POST /sessions`,
`POST /sessions/{id}/power-update`, `POST /sessions/{id}/stop` (204).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from agent.api.context import ApiContext, NewSession, SessionView
from agent.api.models import (
    ConnectorId,
    Health,
    PowerUpdate,
    Session,
    SessionCreate,
    SessionEnvelope,
    StationConfig,
    StationStatus,
)

router = APIRouter(tags=["electra"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Unknown charger, connector index or session id"}}


def _ctx(request: Request) -> ApiContext:
    return request.app.state.ctx


def electra_session(view: SessionView) -> Session:
    return Session(
        sessionId=view.session_id,
        connectorId=ConnectorId(chargerId=view.charger_id, idx=view.idx),
        allocatedPower=view.allocated_kw,
        vehicleMaxPower=view.vehicle_max_kw,
    )


@router.get("/health", response_model=Health, summary="Health check")
async def health() -> Health:
    return Health(status="ok")


@router.get(
    "/station/config", response_model=StationConfig, summary="Current station configuration"
)
async def get_config(request: Request) -> StationConfig:
    return _ctx(request).station_config()


@router.post(
    "/station/config",
    response_model=StationConfig,
    summary="Replace the station configuration (drops sessions created through this API)",
)
async def post_config(body: StationConfig, request: Request) -> StationConfig:
    ctx = _ctx(request)
    ctx.replace_station_config(body)
    return ctx.station_config()


@router.get("/station/status", response_model=StationStatus, summary="Active sessions")
async def station_status(request: Request) -> StationStatus:
    return StationStatus(
        sessions={v.session_id: electra_session(v) for v in _ctx(request).sessions()}
    )


@router.post(
    "/sessions",
    response_model=SessionEnvelope,
    summary="Start a charging session",
    responses={**_NOT_FOUND, 409: {"description": "Connector in use"}},
)
async def create_session(body: SessionCreate, request: Request) -> SessionEnvelope:
    view = _ctx(request).create_session(
        NewSession(body.connectorId.chargerId, body.connectorId.idx, body.vehicleMaxPower)
    )
    return SessionEnvelope(session=electra_session(view))


@router.post(
    "/sessions/{session_id}/power-update",
    response_model=SessionEnvelope,
    summary="Report the power a session consumes",
    responses=_NOT_FOUND,
)
async def power_update(session_id: str, body: PowerUpdate, request: Request) -> SessionEnvelope:
    view = _ctx(request).report_consumption(session_id, body.consumedPower)
    return SessionEnvelope(session=electra_session(view))


@router.post(
    "/sessions/{session_id}/stop",
    status_code=204,
    summary="End a charging session",
    responses=_NOT_FOUND,
)
async def stop_session(session_id: str, request: Request) -> Response:
    _ctx(request).stop_session(session_id)
    return Response(status_code=204)
