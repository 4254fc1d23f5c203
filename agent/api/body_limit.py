"""Bounded request bodies: a body above `max_bytes` is refused with 413 before it is read.

Without a bound a 120 MB POST was read and parsed on the daemon's event loop, stopping the
control loop for 10.8 s (past the watchdog). A declared Content-Length above the bound is
refused at once, unread; a chunked body is counted as it arrives and cut off at the bound.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from agent.config.api import DEFAULT_MAX_BODY_BYTES

log = logging.getLogger(__name__)


class BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    def __init__(self, app: Any, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        try:
            too_big = declared is not None and int(declared) > self.max_bytes
        except ValueError:
            too_big = False  # the server itself answers a malformed length
        if too_big:
            await self._refuse(scope, send)
            return
        seen = 0
        started = False

        async def counted_receive() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracked_send(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(scope, send)

    async def _refuse(self, scope: dict[str, Any], send: Any) -> None:
        log.warning("local API: %s %s refused: body above %d bytes (api.max_body_bytes)",
                    scope.get("method"), scope.get("path"), self.max_bytes)  # fmt: skip
        body = json.dumps({"error": f"request body above {self.max_bytes} bytes "
                                    "(api.max_body_bytes)"}).encode()  # fmt: skip
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"), (b"connection", b"close"),
            (b"content-length", str(len(body)).encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})
