"""SunSpec discovery: find the "SunS" marker and walk the model chain.

A SunSpec device lays its models end to end after the marker: each starts with its model id
and its length in registers, and the chain ends with id 0xFFFF. Profiles name points by
model and offset inside the model's data, so discovery only needs where each model starts.
"""

from __future__ import annotations

from drivers.transport import Bus, TransportError

SUNS_MARKER = [0x5375, 0x6E53]  # "SunS"
BASE_ADDRESSES = (40000, 0, 50000)
END_MODEL = 0xFFFF
MAX_MODELS = 64  # a real device has a handful; bounds the walk on a corrupt chain


class SunSpecError(Exception):
    """No SunSpec map found, or the model chain is malformed."""


async def discover(bus: Bus, unit_id: int, *, timeout_s: float) -> dict[int, int]:
    """Model id -> protocol address of the model's first data register (after ID and L).

    The first instance of a model wins. Transport timeouts propagate (the device is silent);
    Modbus exceptions at a candidate base just mean "not here".
    """
    for base in BASE_ADDRESSES:
        try:
            marker = await bus.read(unit_id, "holding", base, 2, timeout_s=timeout_s)
        except TransportError as exc:
            if exc.kind == "exception":
                continue
            raise
        if marker == SUNS_MARKER:
            return await _walk(bus, unit_id, base + 2, timeout_s)
    raise SunSpecError(f"unit {unit_id}: no SunSpec marker at {', '.join(map(str, BASE_ADDRESSES))}")


async def _walk(bus: Bus, unit_id: int, address: int, timeout_s: float) -> dict[int, int]:
    models: dict[int, int] = {}
    for _ in range(MAX_MODELS):
        model_id, length = await bus.read(unit_id, "holding", address, 2, timeout_s=timeout_s)
        if model_id == END_MODEL:
            return models
        if length == 0 or address + 2 + length > 0xFFFF:
            raise SunSpecError(f"unit {unit_id}: model {model_id} at {address} has bad length {length}")
        models.setdefault(model_id, address + 2)
        address += 2 + length
    raise SunSpecError(f"unit {unit_id}: more than {MAX_MODELS} models, chain looks corrupt")
