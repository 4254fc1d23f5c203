"""`GET /api/v1/ocpp/{charge_point_id}/log`: an OCPP charger's last frames, both ways (and,
in local controller mode, to and from the operator's CSMS), for `sems ocpp log`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from agent.api.context import ApiContext

router = APIRouter(prefix="/api/v1", tags=["station (sems-edge)"])


@router.get("/ocpp/{charge_point_id}/log",
            summary="An OCPP charger's last messages, oldest first (dir: in, out, to_csms, from_csms)")
async def ocpp_log(request: Request, charge_point_id: str,
                   limit: int = Query(default=50, ge=1, le=200)) -> dict[str, Any]:
    ctx: ApiContext = request.app.state.ctx
    return {"chargePointId": charge_point_id, "messages": ctx.ocpp_log(charge_point_id, limit)}
