"""Transport and health over real sockets and pseudo-terminals, against a pymodbus server
holding register images written by the test."""

from __future__ import annotations

import asyncio
import logging
import math
import time

import pytest
from modbus_regserver import RegisterServer, Unit
from regimages import f32, f64, i32

import drivers
from drivers.codec import encode


def meter_unit(power_w: float = 12345.0) -> Unit:
    """sim-meter registers, written with struct (not the codec under test)."""
    u = Unit()
    u.set("input", 0, f32(power_w))
    for i, w in enumerate((4000.0, 4100.0, 4245.0)):  # phases add up to the total
        u.set("input", 2 + 2 * i, f32(w * power_w / 12345.0))
    u.set("input", 8, f64(5_000_000.0))
    u.set("input", 12, f64(1_500.0))
    u.set("input", 28, f32(50.0))
    return u


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_meter_reads_in_one_request_over_tcp() -> None:
    async def main() -> None:
        async with RegisterServer({1: meter_unit()}) as srv:
            meter = drivers.make_device("meter", srv.endpoint, 1, "sim-meter", timeout_s=0.5)
            reading = await meter.read()
            assert reading.power_kw == pytest.approx(12.345)
            assert reading.phases_kw == pytest.approx((4.0, 4.1, 4.245))
            assert reading.energy_import_kwh == pytest.approx(5000.0)
            assert reading.energy_export_kwh == pytest.approx(1.5)
            assert abs(reading.ts - time.time()) < 5
            assert len(meter.blocks) == 1 and meter.blocks[0].count == 30
            requests = meter.bus.requests
            await meter.read()
            assert meter.bus.requests == requests + 1  # never one request per value
            h = meter.health
            assert h.online and h.last_ok_ts is not None and h.latency_p50_ms is not None
            assert h.latency_p99_ms is not None and h.latency_p99_ms >= h.latency_p50_ms
            assert h.errors == dict.fromkeys(drivers.ERROR_KINDS, 0)
            assert h.value_ages_s["power_total"] < 1.0
            await meter.bus.close()
    run(main())


def test_devices_on_one_endpoint_share_the_connection() -> None:
    async def main() -> None:
        async with RegisterServer({1: meter_unit(1000.0), 2: meter_unit(2000.0)}) as srv:
            a = drivers.make_device("meter", srv.endpoint, 1, "sim-meter", timeout_s=0.5)
            b = drivers.make_device("meter", srv.endpoint, 2, "sim-meter", timeout_s=0.5)
            assert a.bus is b.bus
            ra, rb = await asyncio.gather(a.read(), b.read())
            assert (ra.power_kw, rb.power_kw) == pytest.approx((1.0, 2.0))
            await a.bus.close()
    run(main())


def test_silent_device_goes_offline_fast_and_recovers() -> None:
    async def main() -> None:
        unit = meter_unit()
        async with RegisterServer({1: unit}) as srv:
            meter = drivers.make_device("meter", srv.endpoint, 1, "sim-meter", timeout_s=0.15)
            await meter.read()
            unit.mode = "silent"
            t0 = time.monotonic()
            for _ in range(2):
                with pytest.raises(drivers.DeviceError) as err:
                    await meter.read()
                assert err.value.kind == "timeout"
            elapsed = time.monotonic() - t0
            assert elapsed < 2 * 0.15 + 0.2  # each read bounded by its timeout
            h = meter.health
            assert not h.online and h.errors["timeout"] == 2 and "no answer" in (h.last_error or "")
            unit.mode = "ok"
            # the bus may have dropped the half-open connection: a retry reconnects
            for _ in range(5):
                try:
                    await meter.read()
                    break
                except drivers.DeviceError:
                    await asyncio.sleep(0.25)
            assert meter.health.online
            await meter.bus.close()
    run(main())


def test_modbus_exception_is_counted_as_exception() -> None:
    async def main() -> None:
        unit = meter_unit()
        async with RegisterServer({1: unit}) as srv:
            meter = drivers.make_device("meter", srv.endpoint, 1, "sim-meter", timeout_s=0.5)
            unit.mode = "exception"
            for _ in range(2):
                with pytest.raises(drivers.DeviceError) as err:
                    await meter.read()
                assert err.value.kind == "exception" and "device failure" in str(err.value)
            h = meter.health
            assert not h.online and h.errors["exception"] == 2
            unit.mode = "ok"
            await meter.read()
            assert meter.health.online
            await meter.bus.close()
    run(main())


def test_garbage_values_are_none_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        unit = meter_unit()
        async with RegisterServer({1: unit}) as srv:
            meter = drivers.make_device("meter", srv.endpoint, 1, "sim-meter", timeout_s=0.5)
            unit.set("input", 0, [0x7FC0, 0x0000])  # NaN total power
            unit.set("input", 28, f32(3.0))  # 3 Hz: outside 45..65
            unit.set("input", 8, f64(-5.0))  # negative energy counter
            with caplog.at_level(logging.WARNING, logger="drivers"):
                for _ in range(5):
                    r = await meter.read()
                    assert r.power_kw is None and r.energy_import_kwh is None
                    assert r.phases_kw == pytest.approx((4.0, 4.1, 4.245))  # good fields still used
            warnings = [rec.getMessage() for rec in caplog.records if "ignoring" in rec.getMessage()]
            assert len(warnings) == 3, warnings  # once per bad field, not once per cycle
            h = meter.health
            assert h.online  # bad values do not make a silent device
            assert h.errors["decode"] == 5 and h.errors["invalid"] == 10
            unit.set("input", 0, f32(12345.0))  # the phases' sum again
            # Trusted again from the second plausible read on (drivers/device.py).
            assert (await meter.read()).power_kw is None
            assert (await meter.read()).power_kw == pytest.approx(12.345)
            await meter.bus.close()
    run(main())


def test_impossible_jump_is_rejected_once_then_accepted(tmp_path) -> None:  # type: ignore[no-untyped-def]
    profile = tmp_path / "jumpy.toml"
    profile.write_text("""
[device]
name = "jumpy meter"
kind = "meter"
[[point]]
name = "power_total"
address = 0
type = "float32"
unit = "W"
max_rate = 1000000
""")
    now = [100.0]

    async def main() -> None:
        unit = Unit()
        unit.set("holding", 0, f32(1000.0))
        async with RegisterServer({1: unit}) as srv:
            meter = drivers.make_device("meter", srv.endpoint, 1, profile, timeout_s=0.5,
                                        clock=lambda: now[0])
            assert (await meter.read()).power_kw == pytest.approx(1.0)
            now[0] += 0.25
            unit.set("holding", 0, f32(5_000_000.0))  # +5 MW in 250 ms
            assert (await meter.read()).power_kw is None
            now[0] += 0.25
            assert (await meter.read()).power_kw == pytest.approx(5000.0)  # it really moved
            assert meter.health.errors["invalid"] == 1
            await meter.bus.close()
    run(main())


def test_dropped_connection_reconnects_with_backoff() -> None:
    async def main() -> None:
        unit = meter_unit()
        srv = RegisterServer({1: unit})
        await srv.__aenter__()
        endpoint = srv.endpoint
        meter = drivers.make_device("meter", endpoint, 1, "sim-meter", timeout_s=0.2)
        await meter.read()
        await srv.stop()  # the device's TCP server goes away
        kinds = []
        for _ in range(3):
            with pytest.raises(drivers.DeviceError) as err:
                await meter.read()
            kinds.append(err.value.kind)
        assert set(kinds) == {"disconnected"}
        h = meter.health
        assert not h.online and h.errors["disconnected"] == 3
        # backoff: an immediate retry does not hammer the endpoint, it fails at once
        t0 = time.monotonic()
        with pytest.raises(drivers.DeviceError, match="next attempt"):
            await meter.read()
        assert time.monotonic() - t0 < 0.05
        # the device comes back on the same port
        port = int(endpoint.rsplit(":", 1)[1])
        from pymodbus.server import ModbusTcpServer
        again = RegisterServer({1: unit})
        again._server = ModbusTcpServer([again._device(1)], address=("127.0.0.1", port))
        await again._server.serve_forever(background=True)
        try:
            for _ in range(40):
                try:
                    await meter.read()
                    break
                except drivers.DeviceError:
                    await asyncio.sleep(0.1)
            assert meter.health.online
        finally:
            await again.stop()
            await meter.bus.close()
            await srv.__aexit__(None, None, None)
    run(main())


def test_silent_device_does_not_delay_other_endpoints() -> None:
    async def main() -> None:
        silent = meter_unit()
        silent.mode = "silent"
        async with RegisterServer({1: silent}) as dead, RegisterServer({1: meter_unit()}) as alive:
            slow = drivers.make_device("meter", dead.endpoint, 1, "sim-meter", timeout_s=0.3)
            fast = drivers.make_device("meter", alive.endpoint, 1, "sim-meter", timeout_s=0.3)

            async def timed(dev):  # type: ignore[no-untyped-def]
                t0 = time.monotonic()
                try:
                    await dev.read()
                    return time.monotonic() - t0, None
                except drivers.DeviceError as exc:
                    return time.monotonic() - t0, exc.kind

            for _ in range(3):
                (t_slow, k_slow), (t_fast, k_fast) = await asyncio.gather(timed(slow), timed(fast))
                assert k_slow == "timeout" and k_fast is None
                assert t_fast < 0.1, t_fast
                assert t_slow < 0.3 + 0.15
            await slow.bus.close()
            await fast.bus.close()
    run(main())


def test_rtu_over_pseudo_terminal_with_two_units_and_corrupted_frames() -> None:
    async def main() -> None:
        meter = meter_unit(-3000.0)
        bms = Unit()
        bms.set("holding", 0, [655, 980])  # soc 65.5 %, soh 98.0 %
        bms.set("holding", 2, list(reversed(i32(-2500))))  # int32, low word first
        async with RegisterServer({1: meter, 2: bms}, rtu=True) as srv:
            assert srv.endpoint.startswith("rtu:///dev/pts/")
            m = drivers.make_device("meter", srv.endpoint, 1, "sim-meter", timeout_s=0.3)
            b = drivers.make_device("battery", srv.endpoint, 2, "sim-bms", timeout_s=0.3)
            assert m.bus is b.bus  # one RS-485 line, one serial port
            rm, rb = await asyncio.gather(m.read(), b.read())  # serialised by the bus lock
            assert rm.power_kw == pytest.approx(-3.0)
            assert (rb.soc_pct, rb.soh_pct) == pytest.approx((65.5, 98.0))
            assert rb.power_kw == pytest.approx(-2.5)
            assert srv.bridge is not None
            srv.bridge.corrupt = True
            for _ in range(2):
                with pytest.raises(drivers.DeviceError) as err:
                    await m.read()
                assert err.value.kind == "timeout"  # a bad CRC frame is dropped: no answer
            assert not m.health.online and srv.bridge.frames_corrupted >= 2
            srv.bridge.corrupt = False
            await asyncio.sleep(0.05)
            assert (await m.read()).power_kw == pytest.approx(-3.0)
            assert m.health.online
            await m.bus.close()
    run(main())


def test_read_values_never_returns_nan() -> None:
    async def main() -> None:
        unit = meter_unit()
        unit.set("input", 2, [0x7F80, 0x0000])  # +inf on phase 1
        async with RegisterServer({1: unit}) as srv:
            meter = drivers.make_device("meter", srv.endpoint, 1, "sim-meter", timeout_s=0.5)
            values = await meter.read_values()
            assert values["power_l1"] is None
            assert all(v is None or isinstance(v, str) or math.isfinite(v) for v in values.values())
            assert (await meter.read()).phases_kw is None
            await meter.bus.close()
    run(main())


def test_sim_meter_layout_matches_struct_image() -> None:
    p = drivers.load_profile("sim-meter").point("power_total")
    assert p is not None and encode(p, 12345.0) == f32(12345.0)
