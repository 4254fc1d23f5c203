"""Every injected fault as a plain Modbus client sees it, over TCP and RTU."""

from __future__ import annotations

import asyncio
import math

import pytest
from hardware_sim import ManualClock, Simulator
from hardware_sim.faults import FaultError
from pymodbus.exceptions import ConnectionException, ModbusIOException

from .helpers import STATION, f32, hostport, rtu_client, run, tcp_client, u32

MODBUS_FAILURE = (ModbusIOException, ConnectionException)


def sim() -> Simulator:
    return Simulator(STATION, clock=ManualClock())


async def read_meter(client, unit: int = 1):
    return await client.read_input_registers(0, count=2, device_id=unit)


def test_silent_then_clear() -> None:
    async def body() -> None:
        async with sim() as s:
            c = await tcp_client(s.endpoints["meter"]["tcp"], timeout=0.3)
            s.inject("meter", "silent")
            assert s.state()["faults"] == {"meter": "silent"}
            with pytest.raises(ModbusIOException):
                await read_meter(c)
            s.clear("meter")
            assert not (await read_meter(c)).isError()
            c.close()
    run(body)


def test_exception_code_over_tcp_and_rtu() -> None:
    async def body() -> None:
        async with sim() as s:
            s.inject("meter", "exception", code=4)
            c = await tcp_client(s.endpoints["meter"]["tcp"])
            r = await read_meter(c)
            assert r.isError() and r.exception_code == 4
            c.close()
            s.clear("meter")
            s.inject("bms", "exception", code=6)
            rtu = await rtu_client(s.endpoints["bms"]["rtu"])
            r = await rtu.read_holding_registers(0, count=1, device_id=2)
            assert r.isError() and r.exception_code == 6
            assert not (await rtu.read_input_registers(0, count=2, device_id=1)).isError()
            rtu.close()
    run(body)


def test_garbage_random_and_nan() -> None:
    async def body() -> None:
        async with sim() as s:
            s.set(base_load_kw=10.0, pv_kw=0.0)
            s.advance(0.1)
            c = await tcp_client(s.endpoints["meter"]["tcp"])
            good = (await c.read_input_registers(0, count=30, device_id=1)).registers
            s.inject("meter", "garbage")
            bad1 = (await c.read_input_registers(0, count=30, device_id=1)).registers
            bad2 = (await c.read_input_registers(0, count=30, device_id=1)).registers
            assert bad1 != good and bad1 != bad2
            s.inject("meter", "garbage", mode="nan")
            nan = (await c.read_input_registers(0, count=2, device_id=1)).registers
            assert math.isnan(f32(nan))
            s.clear("meter")
            assert (await c.read_input_registers(0, count=30, device_id=1)).registers == good
            c.close()
    run(body)


def test_drop_closes_refuses_then_recovers() -> None:
    async def body() -> None:
        async with sim() as s:
            ep = s.endpoints["chargers"]["CP1"]
            c = await tcp_client(ep["tcp"], timeout=0.3)
            s.inject("CP1", "drop", duration=0.6)
            await asyncio.sleep(0.1)
            with pytest.raises(MODBUS_FAILURE):
                r = await c.read_holding_registers(0, count=2, device_id=ep["unit"])
                assert r.isError()
            c.close()
            host, port = hostport(ep["tcp"])
            with pytest.raises(OSError):  # refused while dropped
                _, w = await asyncio.open_connection(host, port)
                w.close()
            await asyncio.sleep(0.8)
            assert "CP1" not in s.state()["faults"]
            c = await tcp_client(ep["tcp"])
            r = await c.read_holding_registers(0, count=2, device_id=ep["unit"])
            assert u32(r.registers) == 150_000
            c.close()
    run(body)


def test_corrupt_rtu_frames_fail_crc_on_the_client() -> None:
    async def body() -> None:
        async with sim() as s:
            rtu = await rtu_client(s.endpoints["meter"]["rtu"], timeout=0.3)
            s.inject("meter", "corrupt")
            with pytest.raises(ModbusIOException):
                await rtu.read_input_registers(0, count=2, device_id=1)
            # the BMS on the same line is unaffected
            assert not (await rtu.read_holding_registers(0, count=1, device_id=2)).isError()
            s.clear("meter")
            await asyncio.sleep(0.05)
            assert not (await rtu.read_input_registers(0, count=2, device_id=1)).isError()
            rtu.close()
    run(body)


def test_slow_device_does_not_delay_the_others() -> None:
    async def body() -> None:
        async with sim() as s:
            s.inject("inverter", "slow", delay=0.5)
            loop = asyncio.get_running_loop()
            inv = await tcp_client(s.endpoints["inverter"]["tcp"], timeout=2.0)
            meter = await tcp_client(s.endpoints["meter"]["tcp"])
            t0 = loop.time()
            slow = loop.create_task(inv.read_holding_registers(0, count=2, device_id=3))
            await read_meter(meter)
            assert loop.time() - t0 < 0.3
            assert not (await slow).isError()
            assert loop.time() - t0 >= 0.5
            inv.close()
            meter.close()
    run(body)


def test_bad_fault_requests_are_clear_errors() -> None:
    async def body() -> None:
        async with sim() as s:
            with pytest.raises(FaultError, match="unknown kind"):
                s.inject("meter", "melt")
            with pytest.raises(FaultError, match="fault.code"):
                s.inject("meter", "exception", code=0)
            with pytest.raises(ValueError, match="unknown device"):
                s.inject("nope", "silent")
    run(body)


def test_heartbeat_and_fallback_through_registers() -> None:
    async def body() -> None:
        async with sim() as s:
            ep = s.endpoints["chargers"]["CP1"]
            unit = ep["unit"]
            s.plug("CP1", 1, max_kw=150.0, capacity_kwh=80.0, soc=0.2, energy_needed_kwh=50.0)
            c = await tcp_client(ep["tcp"])
            assert not (await c.write_register(5, 3, device_id=unit)).isError()  # timeout 3 s
            assert not (await c.write_registers(3, [0, 7000], device_id=unit)).isError()
            assert not (await c.write_registers(17, [1, 34464], device_id=unit)).isError()
            s.advance(2.5)  # 100 kW (0x186A0) after delay and ramp
            assert not (await c.write_register(2, 1, device_id=unit)).isError()  # heartbeat
            s.advance(2.5)
            power = (await c.read_holding_registers(11, count=2, device_id=unit)).registers
            assert u32(power) == pytest.approx(100_000, abs=1)
            s.advance(3.0)  # no heartbeat for 3 s: fallback 7 kW
            r = (await c.read_holding_registers(10, count=9, device_id=unit)).registers
            assert u32(r[1:3]) == pytest.approx(7_000, abs=1)
            assert u32(r[7:9]) == 100_000  # the commanded limit still reads back
            assert s.state()["chargers"]["CP1"]["timedOut"]
            c.close()
    run(body)
