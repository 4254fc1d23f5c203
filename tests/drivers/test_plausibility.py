"""Plausibility beyond one value: a meter's phases must add up to its total, and a value
that was invalid is trusted again only after two consecutive plausible reads. Against a
real Modbus server on loopback."""

from __future__ import annotations

import asyncio
import logging

import pytest
from modbus_regserver import RegisterServer
from regimages import f32
from test_drivers_transport import meter_unit

import drivers


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_phases_that_do_not_add_up_invalidate_the_total(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        unit = meter_unit()  # 12.345 kW = 4.0 + 4.1 + 4.245
        async with RegisterServer({1: unit}) as srv:
            meter = drivers.make_device("meter", srv.endpoint, 1, "sim-meter", timeout_s=0.5)
            assert (await meter.read()).power_kw == pytest.approx(12.345)
            unit.set("input", 0, f32(12700.0))  # within 0.5 kW + 3 %: rounding, sampling
            assert (await meter.read()).power_kw == pytest.approx(12.7)
            unit.set("input", 0, f32(30000.0))  # in range, but the phases say 12.3 kW
            with caplog.at_level(logging.WARNING, logger="drivers"):
                r = await meter.read()
            assert r.power_kw is None and r.phases_kw is None
            assert r.energy_import_kwh == pytest.approx(5000.0)  # other points still used
            assert any("phases add up to 12.345 kW, total says 30.000 kW" in rec.getMessage()
                       for rec in caplog.records)
            assert meter.health.errors["invalid"] == 4  # total and the three phases
            unit.set("input", 0, f32(12345.0))
            assert (await meter.read()).power_kw is None  # one consistent read: not yet
            assert (await meter.read()).power_kw == pytest.approx(12.345)
            await meter.bus.close()
    run(main())


def test_one_lucky_garbage_read_is_not_trusted() -> None:
    """An out-of-range value, then one in range (garbage that happens to fit): withheld;
    only a second plausible read in a row brings the value back."""
    async def main() -> None:
        unit = meter_unit()
        async with RegisterServer({1: unit}) as srv:
            meter = drivers.make_device("meter", srv.endpoint, 1, "sim-meter", timeout_s=0.5)
            await meter.read()
            unit.set("input", 8, [0x7FF8, 0, 0, 0])  # energy_import NaN
            assert (await meter.read()).energy_import_kwh is None
            unit.set("input", 8, [0x4153, 0x12D0, 0, 0])  # a plausible float64 (5e6 Wh)
            assert (await meter.read()).energy_import_kwh is None
            unit.set("input", 8, [0xC014, 0, 0, 0])  # -5 Wh: out of range again
            assert (await meter.read()).energy_import_kwh is None
            unit.set("input", 8, [0x4153, 0x12D0, 0, 0])
            assert (await meter.read()).energy_import_kwh is None
            assert (await meter.read()).energy_import_kwh == pytest.approx(5000.0)
            await meter.bus.close()
    run(main())
