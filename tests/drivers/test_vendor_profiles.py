"""Vendor profiles against register images laid out from the published tables (the
register numbers, types and scales below are typed from the sources named in each
profile's header - evcc, OpenEMS, mbmd - not read from the profile), on pymodbus's server."""

from __future__ import annotations

import asyncio
import struct

import pytest
from modbus_regserver import RegisterServer, Unit
from regimages import f32, i32, swap_words, u32

import drivers


def u16(v: int) -> list[int]:
    return [v & 0xFFFF]


def u64(v: int) -> list[int]:
    return list(struct.unpack(">HHHH", struct.pack(">Q", v)))


def i64(v: int) -> list[int]:
    return list(struct.unpack(">HHHH", struct.pack(">q", v)))


def run(coro) -> None:  # type: ignore[no-untyped-def]
    asyncio.run(coro)


async def _read(units: dict[int, Unit], unit_id: int, kind: str, profile: str,
                span: tuple[int, int], **kw):  # type: ignore[no-untyped-def]
    srv = RegisterServer(units, span=span)
    await srv.__aenter__()
    dev = drivers.make_device(kind, srv.endpoint, unit_id, profile, timeout_s=1.0, **kw)
    return srv, dev


def test_abb_terra_ac() -> None:
    u = Unit()
    u.set("holding", 0x4006, u32(32000))  # max rated current, mA
    u.set("holding", 0x400C, [0x0000, 0x8400])  # byte 2 = 0x84: bit 7 set, state 4 (C2)
    u.set("holding", 0x400E, u32(16000))  # applied limit, mA
    u.set("holding", 0x4010, u32(15900) + u32(15800) + u32(15700))
    u.set("holding", 0x401C, u32(10950))  # W
    u.set("holding", 0x401E, u32(4321))  # Wh in this session

    async def main() -> None:
        srv, ch = await _read({1: u}, 1, "charger", "abb-terra-ac", (0x4000, 0x4110))
        r = await ch.read()
        c = r.connectors[0]
        assert c.state == "C"
        assert c.power_kw == pytest.approx(10.95)
        assert c.session_energy_kwh == pytest.approx(4.321)
        assert c.limit_kw == pytest.approx(16 * 3 * 230 / 1000)
        assert r.max_power_kw == pytest.approx(32 * 3 * 230 / 1000)
        v = await ch.read_values()
        assert (v[("current_l1", 1)], v[("current_l3", 1)]) == pytest.approx((15.9, 15.7))
        await ch.set_limit(1, 6 * 3 * 230 / 1000)  # 6 A
        assert u.writes[-1] == (0x4100, u32(6000)) and u.write_functions[-1] == 16
        u.set("holding", 0x400C, [0x0000, 0x0000])
        assert (await ch.read()).connectors[0].state == "A"
        await ch.bus.close()
        await srv.stop()
    run(main())


def test_keba_p30() -> None:
    u = Unit()
    u.set("holding", 1000, u32(3))  # charging
    u.set("holding", 1004, u32(7))  # plugged at both ends, locked
    u.set("holding", 1020, u32(11_040_000))  # mW
    u.set("holding", 1036, u32(123_456_7))  # 0.1 Wh
    u.set("holding", 1100, u32(32000))  # mA
    u.set("holding", 1502, u32(54321))  # 0.1 Wh
    u.set("holding", 1600, u32(6000))  # failsafe current, mA
    u.set("holding", 1602, u32(30))

    async def main() -> None:
        srv, ch = await _read({255: u}, 255, "charger", "keba-p30", (1000, 5100))
        r = await ch.read()
        c = r.connectors[0]
        assert c.state == "C" and c.power_kw == pytest.approx(11.04)
        assert c.session_energy_kwh == pytest.approx(5.4321)
        assert r.max_power_kw == pytest.approx(32 * 690 / 1000)
        assert all(b.count <= 2 for b in ch.blocks)  # one 32-bit register per request
        await ch.set_limit(1, 10 * 690 / 1000)
        assert u.writes[-1] == (5004, [10000]) and u.write_functions[-1] == 6
        await ch.set_fallback(4.14, 60)  # 6 A x 690 W/A fits a 4.14 kW share
        with pytest.raises(drivers.NotSupported, match="at most 4.3 A"):
            await ch.set_fallback(3.0, 60)
        u.set("holding", 1000, u32(2))
        u.set("holding", 1004, u32(5))
        assert (await ch.read()).connectors[0].state == "B"
        u.set("holding", 1004, u32(1))
        assert (await ch.read()).connectors[0].state == "A"
        await ch.bus.close()
        await srv.stop()
    run(main())


def test_phoenix_charx_two_controllers() -> None:
    u = Unit()
    for n, (state, mw, soc) in enumerate([("C", 7_200_000, 55), ("B", 0, 80)], start=1):
        base = 1000 * n
        u.set("holding", base + 238, i32(10500) + i32(10400) + i32(10300))
        u.set("holding", base + 244, i32(mw))
        u.set("holding", base + 250, i64(9_876_543))
        u.set("holding", base + 264, u16(soc))
        u.set("holding", base + 299, [ord(state) << 8 | ord("2")])  # e.g. "C2"
        u.set("holding", base + 301, u16(16))

    async def main() -> None:
        srv, ch = await _read({1: u}, 1, "charger", "phoenix-charx-sec", (1000, 2400), connectors=2)
        r = await ch.read()
        c1, c2 = r.connectors
        assert (c1.state, c2.state) == ("C", "B")
        assert c1.power_kw == pytest.approx(7.2) and c2.power_kw == 0.0
        assert (c1.soc_pct, c2.soc_pct) == (55.0, 80.0)
        assert c1.limit_kw == pytest.approx(16 * 690 / 1000)
        v = await ch.read_values()
        assert v[("energy_delivered", 2)] == pytest.approx(9_876_543)
        await ch.set_limit(2, 8 * 690 / 1000)
        assert u.writes[-1] == (2301, [8]) and u.write_functions[-1] == 16
        await ch.bus.close()
        await srv.stop()
    run(main())


def test_alpitronic_dc_power_limit() -> None:
    u = Unit()
    base = 100  # connector 1
    u.set("input", base + 0, u16(3))  # charging
    u.set("input", base + 4, u32(148_500))  # W
    u.set("input", base + 7, u16(2345))  # 0.01 kWh
    u.set("input", base + 8, u16(42))  # %
    u.set("input", base + 10, u32(150_000))  # EV max power W
    u.set("input", base + 132, u64(12_345_678))  # Wh
    u.set("holding", base + 0, u32(150_000))  # power limit W

    async def main() -> None:
        srv, ch = await _read({1: u}, 1, "charger", "alpitronic-hyc", (0, 300))
        c = (await ch.read()).connectors[0]
        assert c.state == "C" and c.power_kw == pytest.approx(148.5)
        assert c.session_energy_kwh == pytest.approx(23.45) and c.soc_pct == 42.0
        assert c.ev_max_kw == pytest.approx(150.0) and c.limit_kw == pytest.approx(150.0)
        await ch.set_limit(1, 50.0)
        assert u.writes[-1] == (100, u32(50_000)) and u.write_functions[-1] == 16
        for code, state in ((0, "A"), (1, "B"), (6, "B"), (9, "A")):
            u.set("input", base, u16(code))
            assert (await ch.read()).connectors[0].state == state
        await ch.bus.close()
        await srv.stop()
    run(main())


def test_vestel_evc04_webasto_unite() -> None:
    u = Unit()
    u.set("input", 1001, u16(1))
    u.set("input", 1004, u16(3))
    u.set("input", 1008, u16(16000) + [0] + u16(15900) + [0] + u16(15800))
    u.set("input", 1020, u32(11_000))
    u.set("input", 1036, u32(98765))  # 0.1 kWh
    u.set("input", 1502, u32(7890))  # Wh
    u.set("holding", 2002, u16(20))
    u.set("holding", 5004, u16(16))

    async def main() -> None:
        srv, ch = await _read({255: u}, 255, "charger", "vestel-evc04", (1000, 6100))
        c = (await ch.read()).connectors[0]
        assert c.state == "C" and c.power_kw == pytest.approx(11.0)
        assert c.session_energy_kwh == pytest.approx(7.89)
        assert c.limit_kw == pytest.approx(16 * 690 / 1000)
        v = await ch.read_values()
        assert v["energy_delivered" if "energy_delivered" in v else ("energy_delivered", 1)] \
            == pytest.approx(9876.5)
        assert v[("current_l2", 1)] == pytest.approx(15.9)
        await ch.set_limit(1, 10 * 690 / 1000)
        assert u.writes[-1] == (5004, [10]) and u.write_functions[-1] == 6
        await ch.heartbeat()
        await ch.heartbeat()
        assert u.writes[-2:] == [(6000, [1]), (6000, [1])]  # always 1, never a counter
        assert u.write_functions[-1] == 6
        await ch.bus.close()
        await srv.stop()
    run(main())


def test_carlo_gavazzi_em24_low_word_first() -> None:
    u = Unit()
    lsw = swap_words  # the EM24 sends the low word first
    u.set("input", 0x00, lsw(i32(2301)) + lsw(i32(2302)) + lsw(i32(2303)))  # 0.1 V
    u.set("input", 0x0C, lsw(i32(10_000)) + lsw(i32(-5_000)) + lsw(i32(7_500)))  # mA
    u.set("input", 0x12, lsw(i32(23_000)) + lsw(i32(-11_500)) + lsw(i32(17_250)))  # 0.1 W
    u.set("input", 0x28, lsw(i32(28_750)))  # 0.1 W
    u.set("input", 0x37, u16(500))  # 0.1 Hz
    u.set("input", 0x42, lsw(i32(1_234_567)))  # 0.1 kWh
    u.set("input", 0x5C, lsw(i32(76_543)))

    async def main() -> None:
        srv, met = await _read({1: u}, 1, "meter", "carlo-gavazzi-em24", (0, 200))
        r = await met.read()
        assert r.power_kw == pytest.approx(2.875)
        assert r.phases_kw == pytest.approx((2.3, -1.15, 1.725))
        assert r.energy_import_kwh == pytest.approx(123_456.7)
        assert r.energy_export_kwh == pytest.approx(7_654.3)
        v = await met.read_values()
        assert (v["voltage_l1"], v["current_l2"], v["frequency"]) == pytest.approx((230.1, -5.0, 50.0))
        await met.bus.close()
        await srv.stop()
    run(main())


def test_regimages_f32_unused() -> None:
    # keeps the helper import honest: float32 images are covered by the Alfen tests
    assert f32(1.0) == [0x3F80, 0]
