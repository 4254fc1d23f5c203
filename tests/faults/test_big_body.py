"""Bounded input (issue 12, finding 3): a 120 MB request body to the local API is refused
with 413 before it is read, and the control loop misses no cycle meanwhile."""

from __future__ import annotations

import asyncio
import json

import pytest

from .harness import Scenario

pytestmark = pytest.mark.timeout(90)
BODY_BYTES = 120 * 1024 * 1024


async def post_declared(socket_path: str, path: str, length: int) -> bytes:
    """POST declaring `length` body bytes and sending only the first KB of them: the
    answer must come before the body (a server reading it first would wait forever)."""
    reader, writer = await asyncio.open_unix_connection(socket_path)
    writer.write(f"POST {path} HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {length}\r\n\r\n".encode() + b" " * 1024)  # fmt: skip
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), 10)  # the server closes after its 413
    writer.transport.abort()
    return response


def test_120_mb_body_is_refused_without_a_missed_cycle(tmp_path):
    async def scenario() -> None:
        async with Scenario(tmp_path) as sc:
            await sc.start_charging()
            before = (await sc.health())
            response = await post_declared(sc.config["api"]["socket_path"], "/station/config",
                                           BODY_BYTES)  # fmt: skip
            head, _, body = response.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 413"), response[:300]
            assert "api.max_body_bytes" in json.loads(body)["error"]
            await sc.run_for(1.0)  # watchdog pings every 0.5 s throughout
            sc.check_invariants()
            await sc.agent.wait_log(r"WARNING .*refused: body above 1048576 bytes")
            assert (await sc.health())["status"] == before["status"]
            assert await sc.agent.stop() == 0

    asyncio.run(scenario())
