"""Demand-response power caps in the local API (`/api/v1/grid/power-caps`).

The same store as the cloud's `power.cap.set` / `power.cap.clear` (agent.store.signals): a cap
set by either side can be listed, cancelled or shortened by either, and the control loop
reads the one table. Finding 11 of issue 12: caps could be set but never cancelled locally.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Path, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from starlette.exceptions import HTTPException

from agent.api.context import FieldError, NotFound
from agent.model.clock import iso
from agent.store import signals as sig

router = APIRouter(prefix="/api/v1/grid/power-caps", tags=["grid"])
_404: dict[int | str, dict[str, Any]] = {404: {"description": "No such power cap"},
                                         503: {"description": "No signals store in this mode"}}
CapId = Path(max_length=128, description="the cap's id (for a cloud cap, its command id)")


class PowerCapCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cap_kw: float = Field(ge=0, le=100_000, allow_inf_nan=False, description="grid import cap, kW")
    start: AwareDatetime | None = Field(None, description="default: now")
    end: AwareDatetime

    @model_validator(mode="after")
    def _window(self) -> PowerCapCreate:
        if self.start is not None and self.end <= self.start:
            raise ValueError("end: must be after start")
        return self


class PowerCapShorten(BaseModel):
    model_config = ConfigDict(extra="forbid")
    end: AwareDatetime = Field(description="the new end: not after the current one")


class PowerCapOut(BaseModel):
    id: str
    cap_kw: float
    start: str
    end: str
    active: bool = Field(description="in force now")


class PowerCapList(BaseModel):
    items: list[PowerCapOut]
    active_cap_kw: float | None = Field(description="the tightest cap in force now, kW")


class PowerCapsCleared(BaseModel):
    cleared: list[str]
    active_cap_kw: float | None


def _signals(request: Request) -> tuple[sig.Signals, datetime]:
    ctx = request.app.state.ctx
    if ctx.signals is None:
        raise HTTPException(503, "power caps need the agent's signals store, absent in this mode")
    return ctx.signals, ctx.now()


def _out(cap: sig.PowerCap, now: datetime) -> PowerCapOut:
    return PowerCapOut(id=cap.id, cap_kw=cap.cap_kw, start=iso(cap.start), end=iso(cap.end),
                       active=cap.start <= now < cap.end)


@router.get("", response_model=PowerCapList, responses=_404, summary="Stored power caps and the one in force")
async def list_caps(request: Request) -> PowerCapList:
    signals, now = _signals(request)
    return PowerCapList(items=[_out(c, now) for c in signals.power_caps()],
                        active_cap_kw=signals.active_power_cap(now))


@router.post("", response_model=PowerCapOut, status_code=201, responses=_404, summary="Set a power cap")
async def create_cap(body: PowerCapCreate, request: Request) -> PowerCapOut:
    signals, now = _signals(request)
    start = body.start or now
    if body.end <= start:
        raise FieldError("end", "must be in the future")
    cap = signals.set_power_cap(sig.PowerCap(id=str(uuid.uuid4()), cap_kw=body.cap_kw, start=start, end=body.end))
    return _out(cap, now)


@router.delete("", response_model=PowerCapsCleared, responses=_404, summary="Cancel every power cap")
async def clear_caps(request: Request) -> PowerCapsCleared:
    signals, now = _signals(request)
    cleared = signals.clear_power_caps(None)
    return PowerCapsCleared(cleared=cleared, active_cap_kw=signals.active_power_cap(now))


@router.delete("/{cap_id}", response_model=PowerCapsCleared, responses=_404, summary="Cancel one power cap")
async def clear_cap(request: Request, cap_id: str = CapId) -> PowerCapsCleared:
    signals, now = _signals(request)
    cleared = signals.clear_power_caps(cap_id)
    if not cleared:
        raise NotFound(f"no power cap {cap_id!r}")
    return PowerCapsCleared(cleared=cleared, active_cap_kw=signals.active_power_cap(now))


@router.patch("/{cap_id}", response_model=PowerCapOut, responses=_404,
              summary="Shorten a power cap (bring its end forward)")
async def shorten_cap(body: PowerCapShorten, request: Request, cap_id: str = CapId) -> PowerCapOut:
    signals, now = _signals(request)
    try:
        # An end already past ends the cap now (its record keeps when it really stopped).
        cap = signals.shorten_power_cap(cap_id, max(body.end, now))
    except KeyError:
        raise NotFound(f"no power cap {cap_id!r}") from None
    except ValueError as exc:
        field, _, reason = str(exc).partition(": ")
        raise FieldError(field, reason) from None
    return _out(cap, now)
