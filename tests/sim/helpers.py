"""Independent decoding for the simulator tests: written from docs/profiles.md and the
sim-*.toml layouts by hand, sharing no code with hardware_sim."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

STATION = {
    "stationId": "T1",
    "gridCapacity": 300.0,
    "chargers": [
        {"id": "CP1", "maxPower": 150.0, "connectors": 2, "kind": "dc"},
        {"id": "AC1", "maxPower": 22.0, "connectors": 1, "kind": "ac"},
    ],
    "battery": {"capacity": 200.0, "maxChargePower": 100.0, "maxDischargePower": 100.0,
                "socStart": 0.5, "minSoc": 0.1, "maxSoc": 0.95},
    "pvPeak": 100.0,
}


def to_bytes(words: list[int], word_order: str = "big", byte_order: str = "big") -> bytes:
    """Wire registers -> big-endian bytes of the value."""
    if byte_order == "little":
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    if word_order == "little":
        words = list(reversed(words))
    return b"".join(struct.pack(">H", w) for w in words)


def f32(words: list[int], wo: str = "big", bo: str = "big") -> float:
    return struct.unpack(">f", to_bytes(words, wo, bo))[0]


def f64(words: list[int]) -> float:
    return struct.unpack(">d", to_bytes(words))[0]


def i32(words: list[int], wo: str = "big") -> int:
    return struct.unpack(">i", to_bytes(words, wo))[0]


def u32(words: list[int], wo: str = "big") -> int:
    return struct.unpack(">I", to_bytes(words, wo))[0]


def i16(word: int) -> int:
    return struct.unpack(">h", struct.pack(">H", word))[0]


def hostport(endpoint: str) -> tuple[str, int]:
    host, port = endpoint.rsplit(":", 1)
    return host, int(port)


async def tcp_client(endpoint: str, timeout: float = 1.0) -> AsyncModbusTcpClient:
    host, port = hostport(endpoint)
    client = AsyncModbusTcpClient(host, port=port, timeout=timeout, retries=0,
                                  reconnect_delay=0)
    assert await client.connect(), f"cannot connect to {endpoint}"
    return client


async def rtu_client(path: str, timeout: float = 1.0) -> AsyncModbusSerialClient:
    client = AsyncModbusSerialClient(path, timeout=timeout, retries=0, reconnect_delay=0)
    assert await client.connect(), f"cannot open {path}"
    return client


def run(coro_fn: Callable[[], Awaitable[Any]], timeout: float = 30.0) -> Any:
    """Run one async test body with a hard bound."""
    async def bounded() -> Any:
        return await asyncio.wait_for(coro_fn(), timeout)
    return asyncio.run(bounded())
