"""SunSpec discovery: find the "SunS" marker and walk the model chain.

A SunSpec device lays its models end to end after the marker: each starts with its model id
and its length in registers, and the chain ends with id 0xFFFF. Profiles name points by
model and offset inside the model's data, so discovery only needs where each model starts.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.sunspec_models import decode_model, model_name
from drivers.transport import Bus, TransportError

SUNS_MARKER = [0x5375, 0x6E53]  # "SunS"
BASE_ADDRESSES = (40000, 0, 50000)
END_MODEL = 0xFFFF
MAX_MODELS = 64  # a real device has a handful; bounds the walk on a corrupt chain


class SunSpecError(Exception):
    """No SunSpec map found, or the model chain is malformed."""


@dataclass(frozen=True, slots=True)
class ModelAt:
    """One model instance on a device: its id, first data register (after ID and L) and
    data length in registers."""

    id: int
    address: int
    length: int

    @property
    def name(self) -> str:
        return model_name(self.id)


async def discover(bus: Bus, unit_id: int, *, timeout_s: float) -> dict[int, ModelAt]:
    """Model id -> where its first instance is. Transport timeouts propagate (the device is
    silent); Modbus exceptions at a candidate base just mean "not here"."""
    models: dict[int, ModelAt] = {}
    for m in await discover_chain(bus, unit_id, timeout_s=timeout_s):
        models.setdefault(m.id, m)
    return models


async def discover_chain(bus: Bus, unit_id: int, *, timeout_s: float) -> list[ModelAt]:
    """Every model instance in chain order, from the first base address holding "SunS"."""
    for base in BASE_ADDRESSES:
        if await _has_marker(bus, unit_id, base, timeout_s):
            return await _walk(bus, unit_id, base + 2, timeout_s)
    raise SunSpecError(f"unit {unit_id}: no SunSpec marker at {', '.join(map(str, BASE_ADDRESSES))}")


async def chains_at_every_base(bus: Bus, unit_id: int, *,
                               timeout_s: float) -> dict[int, list[ModelAt] | str]:
    """For `sems scan --sunspec`: each base address holding "SunS" -> its model chain, or
    why the chain could not be walked. Empty when the unit has no SunSpec map."""
    found: dict[int, list[ModelAt] | str] = {}
    for base in BASE_ADDRESSES:
        if await _has_marker(bus, unit_id, base, timeout_s):
            try:
                found[base] = await _walk(bus, unit_id, base + 2, timeout_s)
            except SunSpecError as exc:
                found[base] = str(exc)
    return found


async def _has_marker(bus: Bus, unit_id: int, base: int, timeout_s: float) -> bool:
    try:
        return await bus.read(unit_id, "holding", base, 2, timeout_s=timeout_s) == SUNS_MARKER
    except TransportError as exc:
        if exc.kind == "exception":  # nothing mapped there
            return False
        raise


async def _walk(bus: Bus, unit_id: int, address: int, timeout_s: float) -> list[ModelAt]:
    models: list[ModelAt] = []
    for _ in range(MAX_MODELS):
        model_id, length = await bus.read(unit_id, "holding", address, 2, timeout_s=timeout_s)
        if model_id == END_MODEL:
            return models
        if length == 0 or address + 2 + length > 0xFFFF:
            raise SunSpecError(f"unit {unit_id}: model {model_id} at {address} has bad length {length}")
        models.append(ModelAt(model_id, address + 2, length))
        address += 2 + length
    raise SunSpecError(f"unit {unit_id}: more than {MAX_MODELS} models, chain looks corrupt")


async def read_model(bus: Bus, unit_id: int, model: ModelAt, *, timeout_s: float,
                     max_block: int = 120) -> dict[str, float | int | str | None]:
    """Every point of one model instance, decoded with its published definition."""
    regs: list[int] = []
    while len(regs) < model.length:
        count = min(max_block, model.length - len(regs))
        regs += await bus.read(unit_id, "holding", model.address + len(regs), count,
                               timeout_s=timeout_s)
    return decode_model(model.id, regs)
