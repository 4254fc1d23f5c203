"""The simulator's Modbus servers, read with a plain pymodbus client over real loopback TCP
and a real pseudo-terminal (RTU); values decoded here from the documented layouts."""

from __future__ import annotations

import math

import pytest
from hardware_sim import ManualClock, Simulator
from pymodbus.exceptions import ModbusIOException

from .helpers import STATION, f32, f64, i16, i32, rtu_client, run, tcp_client, u32


def sim(**kw):
    return Simulator(STATION, clock=ManualClock(), **kw)


def test_endpoints_are_json_with_unique_units() -> None:
    async def body() -> None:
        async with sim() as s:
            ep = s.endpoints
            assert set(ep) == {"meter", "bms", "inverter", "chargers"}
            assert ep["meter"]["profile"] == "sim-meter" and ep["meter"]["rtu"].startswith("/dev/")
            assert ep["chargers"]["CP1"]["connectors"] == 2
            units = [ep[n]["unit"] for n in ("meter", "bms", "inverter")]
            units += [c["unit"] for c in ep["chargers"].values()]
            assert len(set(units)) == len(units)
            ports = {ep[n]["tcp"] for n in ("meter", "bms", "inverter")}
            assert all(p.startswith("127.0.0.1:") for p in ports)
    run(body)


def test_meter_float32_and_float64_big_endian_over_tcp() -> None:
    async def body() -> None:
        async with sim() as s:
            s.set(base_load_kw=30.0, pv_kw=0.0)
            s.advance(1.0)
            ep = s.endpoints["meter"]
            c = await tcp_client(ep["tcp"])
            r = await c.read_input_registers(0, count=30, device_id=ep["unit"])
            c.close()
            w = r.registers
            truth = s.state()
            assert f32(w[0:2]) == pytest.approx(truth["gridImport"] * 1000, rel=1e-5)
            assert f32(w[0:2]) == pytest.approx(30_000, rel=1e-5)
            phases = [f32(w[2:4]), f32(w[4:6]), f32(w[6:8])]
            assert sum(phases) == pytest.approx(30_000, rel=1e-5)
            assert phases[0] > phases[1]  # base load is unbalanced, L1 heaviest
            assert f64(w[8:12]) == pytest.approx(truth["energyImport"] * 1000, rel=1e-6)
            assert f64(w[8:12]) == pytest.approx(30.0 / 3600 * 1000, rel=1e-3)  # 1 s at 30 kW
            assert 220 < f32(w[16:18]) < 240
            assert f32(w[22:24]) == pytest.approx(phases[0] / f32(w[16:18]), rel=1e-4)
            assert f32(w[28:30]) == pytest.approx(50.0)
    run(body)


def test_bms_scaled_ints_and_low_word_first_power() -> None:
    async def body() -> None:
        async with sim() as s:
            s.set(base_load_kw=10.0, pv_kw=0.0)
            s.model.battery_setpoint_kw = 40.0  # discharging: power > 0
            s.advance(2.0)
            ep = s.endpoints["bms"]
            c = await tcp_client(ep["tcp"])
            r = await c.read_holding_registers(0, count=16, device_id=ep["unit"])
            c.close()
            w = r.registers
            b = s.state()["battery"]
            assert w[0] * 0.1 == pytest.approx(b["soc"] * 100, abs=0.05)
            assert i32(w[2:4], "little") == pytest.approx(40_000, abs=1)
            assert i32(w[2:4], "big") != 40_000  # really little word order
            assert u32(w[6:8]) == pytest.approx(b["allowedDischarge"] * 1000, abs=1)
            assert i16(w[9]) * 0.1 == pytest.approx(40_000 / (w[8] * 0.1), abs=0.2)
            assert w[15] * 0.1 == pytest.approx(200.0)
    run(body)


def test_inverter_word_and_byte_swapped_float_and_setpoint_write() -> None:
    async def body() -> None:
        async with sim() as s:
            s.set(pv_kw=55.5)
            s.advance(0.5)
            ep = s.endpoints["inverter"]
            c = await tcp_client(ep["tcp"])
            r = await c.read_holding_registers(0, count=12, device_id=ep["unit"])
            w = r.registers
            assert f32(w[0:2], "little", "little") == pytest.approx(55_500)
            assert f32(w[0:2]) != pytest.approx(55_500)
            assert w[6] == 0x0100  # status 1 (running): the device's byte order is little
            # battery_setpoint: int32 big/big, -30 kW = charge
            raw = (-30_000) & 0xFFFFFFFF
            wr = await c.write_registers(10, [raw >> 16, raw & 0xFFFF], device_id=ep["unit"])
            assert not wr.isError()
            assert s.model.battery_setpoint_kw == pytest.approx(-30.0)
            s.advance(2.0)
            r = await c.read_holding_registers(0, count=12, device_id=ep["unit"])
            c.close()
            assert f32(r.registers[2:4], "little", "little") == pytest.approx(-30_000, abs=1)
            assert i32(r.registers[10:12]) == -30_000
    run(body)


def test_charger_per_connector_stride_and_limit_write() -> None:
    async def body() -> None:
        async with sim() as s:
            s.plug("CP1", 2, max_kw=80.0, capacity_kwh=60.0, soc=0.3, energy_needed_kwh=30.0)
            s.advance(5.0)
            ep = s.endpoints["chargers"]["CP1"]
            c = await tcp_client(ep["tcp"])
            unit = ep["unit"]
            dev = (await c.read_holding_registers(0, count=6, device_id=unit)).registers
            assert u32(dev[0:2]) == 150_000
            one = (await c.read_holding_registers(10, count=9, device_id=unit)).registers
            two = (await c.read_holding_registers(20, count=9, device_id=unit)).registers
            assert one[0] == 0 and two[0] == 2  # A (no EV) and C (charging)
            assert i32(two[1:3]) == pytest.approx(80_000, abs=1)
            assert u32(two[5:7]) == 80_000  # EV maximum
            assert u32(two[3:5]) > 0  # session energy, Wh
            wr = await c.write_registers(27, [0, 50_000], device_id=unit)
            assert not wr.isError()
            two = (await c.read_holding_registers(20, count=9, device_id=unit)).registers
            assert u32(two[7:9]) == 50_000
            s.advance(3.0)
            two = (await c.read_holding_registers(20, count=9, device_id=unit)).registers
            assert i32(two[1:3]) == pytest.approx(50_000, abs=1)
            c.close()
    run(body)


def test_illegal_address_and_read_only_writes_are_refused() -> None:
    async def body() -> None:
        async with sim() as s:
            ep = s.endpoints["chargers"]["AC1"]
            c = await tcp_client(ep["tcp"])
            gap = await c.read_holding_registers(6, count=4, device_id=ep["unit"])
            assert gap.registers == [0, 0, 0, 0]  # inside the span: drivers bridge gaps
            beyond = await c.read_holding_registers(20, count=2, device_id=ep["unit"])
            assert beyond.isError() and beyond.exception_code == 2  # AC1 has one connector
            ro = await c.write_register(100, 2, device_id=ep["unit"])  # state is read-only
            assert ro.isError() and ro.exception_code == 2
            hb = await c.write_register(2, 1, device_id=ep["unit"])
            assert not hb.isError()
            c.close()
    run(body)


def test_unknown_unit_id_gets_silence_over_tcp() -> None:
    async def body() -> None:
        async with sim() as s:
            ep = s.endpoints["meter"]
            c = await tcp_client(ep["tcp"], timeout=0.3)
            for unit in (0, 2, 99):  # broadcast, another device's id, nobody's
                with pytest.raises(ModbusIOException):
                    await c.read_input_registers(0, count=2, device_id=unit)
            ok = await c.read_input_registers(28, count=2, device_id=ep["unit"])
            assert f32(ok.registers) == pytest.approx(50.0)
            c.close()
    run(body)


def test_rtu_line_serves_meter_and_bms_and_ignores_other_units() -> None:
    async def body() -> None:
        async with sim() as s:
            s.set(base_load_kw=12.0, pv_kw=0.0)
            s.advance(0.2)
            path = s.endpoints["meter"]["rtu"]
            assert s.endpoints["bms"]["rtu"] == path
            c = await rtu_client(path, timeout=0.3)
            r = await c.read_input_registers(0, count=2, device_id=1)
            assert f32(r.registers) == pytest.approx(12_000, rel=1e-5)
            with pytest.raises(ModbusIOException):
                await c.read_input_registers(0, count=2, device_id=5)
            b = await c.read_holding_registers(0, count=1, device_id=2)
            assert b.registers[0] == 500  # 50.0 %
            c.close()
    run(body)


def test_no_rtu_when_disabled_and_no_battery_devices_without_battery() -> None:
    async def body() -> None:
        station = {"gridCapacity": 50, "chargers": [{"id": "A", "maxPower": 11}]}
        async with Simulator(station, clock=ManualClock(), rtu_meter=False) as s:
            ep = s.endpoints
            assert "rtu" not in ep["meter"] and "bms" not in ep and "inverter" not in ep
            assert ep["chargers"]["A"]["kind"] == "ac"
            assert not math.isnan(s.state()["gridImport"])
    run(body)
