"""`create_app(ctx)`: the FastAPI application of the local API.

Handlers are `async def` on purpose: they run on the daemon's event loop, one at a time
between control cycles, so they see and change the agent's state without locks (sync
handlers would run in a thread pool and race the control loop).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent.api import electra, fleet, metrics, ocpp, power_caps, station
from agent.api.context import (
    ApiContext,
    ApiError,
    ConnectorBusy,
    FieldError,
    NotFound,
    NotSupported,
    UnknownConnector,
    UnknownSession,
)

log = logging.getLogger(__name__)

VERSION = "1.0.0"
_FIELD_PATH = re.compile(r"[A-Za-z_][\w.\[\]]*")


def _field(loc: tuple[Any, ...]) -> str:
    # ("body", "connectorId", "idx") -> "connectorId.idx"; ("query", "day") -> "day"
    parts = (
        [str(p) for p in loc[1:]]
        if loc and loc[0] in ("body", "query", "path")
        else [str(p) for p in loc]
    )
    return ".".join(parts) or "body"


def validation_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    out = []
    for err in exc.errors():
        reason = str(err.get("msg", "invalid"))
        reason = reason.removeprefix("Value error, ")
        field = _field(tuple(err.get("loc", ())))
        # Cross-field validators say "end_level: must be above start_level": name that field.
        head, sep, tail = reason.partition(": ")
        if sep and _FIELD_PATH.fullmatch(head):
            field = f"{field}.{head}" if field != "body" else head
            reason = tail
        out.append({"field": field, "reason": reason})
    return out


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message, **extra})


def _field_errors(errors: list[dict[str, str]]) -> JSONResponse:
    """400 naming the first wrong field, with every error listed (schema: ErrorBody)."""
    first = errors[0]
    return _error(400, f"{first['field']}: {first['reason']}", field=first["field"],
                  reason=first["reason"], errors=errors)


def create_app(ctx: ApiContext, *, title: str = "sems-edge local API") -> FastAPI:
    """The application over a running agent (any ApiContext implementation)."""
    app = FastAPI(
        title=title,
        version=VERSION,
        description=(
            "Electra SEMS-compatible station endpoints and the fleet energy service's "
            "station-scope resources under /api/v1. Units: kW, kWh, ISO-8601 UTC."
        ),
    )
    app.state.ctx = ctx

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(exc)
        return _field_errors(errors or [{"field": "body", "reason": "invalid"}])

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # The framework's own refusals (no such route, wrong method, bad JSON framing)
        # answer in the documented shape, not FastAPI's {"detail": ...}.
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(FieldError)
    async def _invalid_field(_: Request, exc: FieldError) -> JSONResponse:
        return _field_errors([{"field": exc.field, "reason": exc.reason}])

    @app.exception_handler(UnknownConnector)
    @app.exception_handler(UnknownSession)
    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: ApiError) -> JSONResponse:
        return _error(404, str(exc))

    @app.exception_handler(ConnectorBusy)
    @app.exception_handler(NotSupported)
    async def _conflict(_: Request, exc: ApiError) -> JSONResponse:
        return _error(409, str(exc))

    @app.exception_handler(ApiError)
    async def _bad(_: Request, exc: ApiError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        # A bug must not take the daemon down: log it with the traceback, answer 500.
        log.exception("local API: %s %s failed", request.method, request.url.path)
        return _error(500, f"internal error: {type(exc).__name__}")

    original_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        # Validation errors answer 400 (see _invalid), not FastAPI's default 422: say so.
        if app.openapi_schema is None:
            schema = original_openapi()
            for path in schema.get("paths", {}).values():
                for op in path.values():
                    responses = op.get("responses", {})
                    if "422" in responses:
                        responses.pop("422")
                        responses["400"] = {"description": "Invalid request: the field and the reason",
                                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
            schema.setdefault("components", {}).setdefault("schemas", {})["ErrorBody"] = {
                "type": "object", "required": ["error"],
                "properties": {"error": {"type": "string"}, "field": {"type": "string"},
                               "reason": {"type": "string"},
                               "errors": {"type": "array", "items": {"type": "object"}}}}
            # The loopback TCP listener needs `Authorization: Bearer <token>` (any case of
            # "Bearer"); the Unix socket needs none (its file permissions are the check).
            schema["components"]["securitySchemes"] = {"bearerAuth": {
                "type": "http", "scheme": "bearer",
                "description": "TCP listener only ([api] token_file); none on the Unix socket"}}
            schema["security"] = [{}, {"bearerAuth": []}]
            for name in ("HTTPValidationError", "ValidationError"):
                schema["components"]["schemas"].pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.include_router(electra.router)
    app.include_router(fleet.router)
    app.include_router(power_caps.router)
    app.include_router(station.router)
    app.include_router(metrics.router)
    app.include_router(ocpp.router)
    return app
