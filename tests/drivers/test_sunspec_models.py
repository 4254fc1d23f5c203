"""Every SunSpec model the agent reads, decoded from images pysunspec2 builds and pymodbus's
own server serves on loopback: each point's value (or None where not implemented) must
come back exactly as chosen."""

from __future__ import annotations

import asyncio
import math

import pytest
from modbus_regserver import RegisterServer, Unit
from sunspec_images import build, device_image

from drivers.sunspec import discover_chain, read_model
from drivers.transport import Bus

MODELS = [1, 101, 102, 103, 111, 112, 113, 120, 121, 122, 123, 124, 160,
          201, 202, 203, 204, 211, 212, 213, 214, 701, 702, 703, 704, 705, 802]


def _same(got: object, want: object) -> bool:
    if isinstance(want, float) and isinstance(got, (int, float)):
        return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)
    return got == want


@pytest.mark.parametrize("seed", [0, 1])
def test_every_model_decodes_exactly(seed: int) -> None:
    built = [build(m, seed) for m in MODELS]

    async def main() -> tuple[int, int, int]:
        end = 40000 + len(device_image(built))
        async with RegisterServer({1: Unit(holding=device_image(built))}, span=(40000, end)) as srv:
            bus = Bus(srv.endpoint)
            try:
                chain = await discover_chain(bus, 1, timeout_s=2.0)
                assert [(m.id, m.length) for m in chain] == [(b.model_id, b.regs[1]) for b in built]
                points = values = not_impl = 0
                for at, b in zip(chain, built, strict=True):
                    got = await read_model(bus, 1, at, timeout_s=2.0)
                    assert set(got) == set(b.expected), f"model {b.model_id}: point names differ"
                    wrong = {k: (got[k], v) for k, v in b.expected.items() if not _same(got[k], v)}
                    assert not wrong, f"model {b.model_id}: {wrong}"
                    points += len(b.expected)
                    values += sum(v is not None for v in b.expected.values())
                    not_impl += sum(v is None for v in b.expected.values())
                return points, values, not_impl
            finally:
                await bus.close()

    points, values, not_impl = asyncio.run(main())
    print(f"\nSunSpec seed {seed}: {len(MODELS)} models, {points} points checked, "
          f"{values} values, {not_impl} not implemented (None)")
    assert points > 1100 and values > 700 and not_impl > 250
