"""Capability drivers: unit conversion at the edge, writes, Alfen's string states and
validity-time limits, and SunSpec discovery with scale factors on a spec-built image."""

from __future__ import annotations

import asyncio
import struct

import pytest
from modbus_regserver import RegisterServer, Unit
from regimages import f32, f64, i16, swap_bytes, swap_words, text, u32

import drivers
from drivers.fallback_check import FallbackRefused


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_sim_charger_read_limit_heartbeat_fallback() -> None:
    async def main() -> None:
        u = Unit()
        u.set("holding", 0, u32(22000))  # max power 22 kW
        for idx, (state, power, energy, evmax) in enumerate([(2, 7400, 3500, 11000), (0, 0, 0, 0)]):
            base = 10 + 10 * idx
            u.set("holding", base, [state])
            u.set("holding", base + 1, list(struct.unpack(">HH", struct.pack(">i", power))))
            u.set("holding", base + 3, u32(energy))
            u.set("holding", base + 5, u32(evmax))
            u.set("holding", base + 7, u32(11000))
        async with RegisterServer({5: u}) as srv:
            ch = drivers.make_device("charger", srv.endpoint, 5, "sim-charger", timeout_s=0.5)
            r = await ch.read()
            assert r.max_power_kw == pytest.approx(22.0)
            c1, c2 = r.connectors
            assert (c1.idx, c1.state, c1.power_kw, c1.session_energy_kwh, c1.ev_max_kw, c1.limit_kw) == (
                1, "C", pytest.approx(7.4), pytest.approx(3.5), pytest.approx(11.0), pytest.approx(11.0))
            assert (c2.idx, c2.state, c2.power_kw) == (2, "A", 0.0)
            await ch.set_limit(2, 4.6)
            assert u.writes[-1] == (27, u32(4600))
            await ch.heartbeat()
            await ch.heartbeat()
            assert u.writes[-2:] == [(2, [1]), (2, [2])]
            await ch.set_fallback(3.7, 30)
            assert u.writes[-2:] == [(3, u32(3700)), (5, [30])]
            with pytest.raises(ValueError, match="connector 3"):
                await ch.set_limit(3, 1.0)
            with pytest.raises(ValueError, match=">= 0"):
                await ch.set_limit(1, -1.0)
            u.set("holding", 10, [9])  # unknown state code
            r = await ch.read()
            assert r.connectors[0].state is None and r.connectors[0].power_kw == pytest.approx(7.4)
            await ch.bus.close()
    run(main())


def alfen_socket(state: str, power_w: float, limit_a: float, applied_a: float | None = None,
                 phases: int = 3) -> Unit:
    """Registers per Alfen's "Implementation of Modbus Slave TCP/IP for Alfen NG9xx"."""
    u = Unit()
    u.set("holding", 344, f32(power_w))
    u.set("holding", 374, f64(123_456.0))
    u.set("holding", 1200, [1])
    u.set("holding", 1201, text(state, 5))
    u.set("holding", 1206, f32(limit_a if applied_a is None else applied_a))
    u.set("holding", 1208, u32(60))
    u.set("holding", 1210, f32(limit_a))
    u.set("holding", 1212, f32(6.0))
    u.set("holding", 1214, [1])
    u.set("holding", 1215, [phases])
    return u


def test_alfen_two_sockets_string_states_and_validity_refresh() -> None:
    async def main() -> None:
        station = Unit()
        station.set("holding", 1100, f32(32.0))
        # socket 1: setpoint 16 A but 13 A applied (another limit acts); socket 2 on 1 phase
        units = {1: alfen_socket("C2", 7360.0, 16.0, applied_a=13.0),
                 2: alfen_socket("B1", 0.0, 10.0, phases=1), 200: station}
        async with RegisterServer(units, span=(0, 1300)) as srv:
            ch = drivers.make_device("charger", srv.endpoint, 1, "alfen-ng9xx", timeout_s=0.5,
                                     connectors=2)
            r = await ch.read()
            assert r.max_power_kw == pytest.approx(32 * 3 * 230 / 1000)
            c1, c2 = r.connectors
            assert (c1.state, c2.state) == ("C", "B")
            assert c1.power_kw == pytest.approx(7.36) and c2.power_kw == 0.0
            assert c1.limit_kw == pytest.approx(13 * 690 / 1000)  # 1206, not 1210
            assert c2.limit_kw == pytest.approx(10 * 230 / 1000)  # one phase (1215)
            assert c1.session_energy_kwh is None and c1.ev_max_kw is None  # not in Alfen's map
            await ch.set_limit(2, 2.3)  # 10 A on the one phase socket 2 uses
            assert units[2].writes[-1] == (1210, f32(10.0))
            # no heartbeat register: heartbeat() renews the limits before validity runs out
            await ch.heartbeat()
            assert units[2].writes[-1] == (1210, f32(10.0)) and len(units[2].writes) == 2
            # safe current 6 A on 3 phases = 4.14 kW per socket: within a 4.14 kW share...
            await ch.set_fallback(4.14, 60)
            # ...but not within 3 kW: refused, naming the ACE setting and the value to set
            with pytest.raises(FallbackRefused) as err:
                await ch.set_fallback(3.0, 60)
            msg = str(err.value)
            assert "Active Load Balancing Safe Current" in msg and "ACE Service Installer" in msg
            assert "at most 4.3 A" in msg
            assert not any(a == 1212 for u in units.values() for a, _ in u.writes)
            await ch.bus.close()
    run(main())


def test_alfen_phase_switch_writes_1215_with_function_6_and_converts_at_the_new_count() -> None:
    async def main() -> None:
        station = Unit()
        station.set("holding", 1100, f32(32.0))
        units = {1: alfen_socket("C2", 6900.0, 10.0), 200: station}
        async with RegisterServer(units, span=(0, 1300)) as srv:
            ch = drivers.make_device("charger", srv.endpoint, 1, "alfen-ng9xx", timeout_s=0.5)
            r = await ch.read()
            assert r.phase_switch_pause_s == 5.0 and r.connectors[0].charge_phases == 3
            await ch.set_phases(1, 1)
            assert units[1].writes[-1] == (1215, [1]) and units[1].write_functions[-1] == 6
            # Alfen's "1: 1 phase, 3: 3 phase charging": once 1215 reads 1, 10 A is 2.3 kW
            units[1].set("holding", 1215, [1])
            c = (await ch.read()).connectors[0]
            assert c.charge_phases == 1 and c.limit_kw == pytest.approx(2.3)
            await ch.set_phases(1, 3)
            assert units[1].writes[-1] == (1215, [3])
            with pytest.raises(ValueError, match="not 1 or 3"):
                await ch.set_phases(1, 2)
            await ch.bus.close()
    run(main())


def test_a_charger_without_the_capability_refuses_a_phase_switch() -> None:
    async def main() -> None:
        async with RegisterServer({5: Unit()}) as srv:
            ch = drivers.make_device("charger", srv.endpoint, 5, "sim-charger", timeout_s=0.5)
            with pytest.raises(drivers.NotSupported, match="cannot switch phases"):
                await ch.set_phases(1, 1)
            await ch.bus.close()
    run(main())


def test_sim_bms_and_inverter_orders_and_setpoint() -> None:
    async def main() -> None:
        bms = Unit()
        bms.set("holding", 0, [805, 990])
        bms.set("holding", 2, swap_words(list(struct.unpack(">HH", struct.pack(">i", 12000)))))
        bms.set("holding", 4, u32(50000))
        bms.set("holding", 6, u32(60000))
        bms.set("holding", 10, i16(-55) + i16(312))  # -5.5 / 31.2 degC
        bms.set("holding", 12, [3301, 3342, 5])
        inv = Unit()
        # float32 with both word and byte order swapped, as sim-inverter declares
        inv.set("holding", 0, swap_bytes(swap_words(f32(8250.0))))
        inv.set("holding", 2, swap_bytes(swap_words(f32(-3000.0))))
        async with RegisterServer({2: bms, 3: inv}) as srv:
            b = drivers.make_device("battery", srv.endpoint, 2, "sim-bms", timeout_s=0.5)
            r = await b.read()
            assert (r.soc_pct, r.soh_pct, r.power_kw) == pytest.approx((80.5, 99.0, 12.0))
            assert (r.max_charge_kw, r.max_discharge_kw) == pytest.approx((50.0, 60.0))
            assert (r.temp_min_c, r.temp_max_c) == pytest.approx((-5.5, 31.2))
            assert (r.cell_v_min, r.cell_v_max, r.alarms) == (pytest.approx(3.301), pytest.approx(3.342), 5)
            i = drivers.make_device("inverter", srv.endpoint, 3, "sim-inverter", timeout_s=0.5)
            ri = await i.read()
            assert (ri.pv_kw, ri.battery_kw) == pytest.approx((8.25, -3.0))
            await i.set_battery_setpoint(-7.5)
            assert inv.writes[-1] == (10, list(struct.unpack(">HH", struct.pack(">i", -7500))))
            await b.bus.close()
    run(main())


# --- SunSpec -------------------------------------------------------------------------
def sunspec_image(base: int = 40000) -> dict[int, int]:
    """A register image laid out per the SunSpec model definitions (common model 1, inverter
    103, battery 802, meter 203), built independently of the profiles."""
    regs: list[int] = [0x5375, 0x6E53]  # "SunS"
    common = text("ACME", 16) + text("Hybrid 10", 16) + [0] * 8 + text("1.0", 8) + text("SN1", 16) + [1, 0x8000]
    regs += [1, len(common)] + common
    inv = [0xFFFF] * 50
    inv[12], inv[13] = 9876 & 0xFFFF, 0xFFFF  # W = 9876 x 10^-1 -> 987.6 W
    inv[22:24] = u32(123456)
    inv[24] = 1  # WH_SF = 1
    inv[29], inv[30] = 1234, 1  # DCW = 1234 x 10^1 = 12.34 kW
    inv[36] = 4  # MPPT
    regs += [103, 50] + inv
    bat = [0xFFFF] * 62
    bat[1] = 100  # WHRtg x 10^3 = 100 kWh
    bat[2], bat[3] = 500, 600  # nameplate x 10^2 W: not what the driver reports as limits
    bat[32], bat[57] = 8000, (-1) & 0xFFFF  # V = 800.0 V
    bat[43], bat[44], bat[60] = 625, 750, (-1) & 0xFFFF  # AChaMax 62.5 A, ADisChaMax 75.0 A
    bat[9], bat[11] = 6543, 97  # SoC x 10^-2 ; SoH x 10^0
    bat[24:26] = [0, 2]  # Evt1: over-temperature alarm bit
    bat[35], bat[38] = 3345, 3301  # cell V x 10^-3
    bat[45] = (-1500) & 0xFFFF  # W x 10^1 = -15 kW (charging)
    bat[51], bat[52], bat[54], bat[56] = 3, 2, (-2) & 0xFFFF, 0
    bat[58], bat[61] = (-3) & 0xFFFF, 1
    regs += [802, 62] + bat
    met = [0] * 105
    met[16:20] = [(-2500) & 0xFFFF, 1000, (-1500) & 0xFFFF, 0x8000]  # W, phases (C not implemented)
    met[20] = 1  # W_SF
    met[14], met[15] = 5002, (-2) & 0xFFFF
    met[36:38] = u32(4321)
    met[44:46] = u32(98765)
    met[52] = 0
    regs += [203, 105] + met
    regs += [0xFFFF, 0]
    return {base + i: r for i, r in enumerate(regs)}


@pytest.mark.parametrize("base", [40000, 0])
def test_sunspec_discovery_and_scale_factors(base: int) -> None:
    async def main() -> None:
        u = Unit(holding=sunspec_image(base))
        span = (base, base + 400)
        async with RegisterServer({126: u}, span=span) as srv:
            inv = drivers.make_device("inverter", srv.endpoint, 126, "sunspec-inverter", timeout_s=0.5)
            ri = await inv.read()
            assert ri.pv_kw == pytest.approx(12.34) and ri.battery_kw is None
            values = await inv.read_values()
            assert values["ac_power"] == pytest.approx(987.6)
            assert values["status"] == "mppt"
            with pytest.raises(drivers.NotSupported):
                await inv.set_battery_setpoint(1.0)
            bat = drivers.make_device("battery", srv.endpoint, 126, "sunspec-storage", timeout_s=0.5)
            rb = await bat.read()
            assert rb.soc_pct == pytest.approx(65.43) and rb.soh_pct == pytest.approx(97.0)
            assert rb.power_kw == pytest.approx(-15.0)
            # the BMS's instantaneous limits: 62.5 A x 800 V, 75 A x 800 V
            assert (rb.max_charge_kw, rb.max_discharge_kw) == pytest.approx((50.0, 60.0))
            assert (rb.cell_v_min, rb.cell_v_max) == pytest.approx((3.301, 3.345))
            assert rb.alarms == 2 and rb.temp_min_c is None
            assert (await bat.read_values())["capacity"] == pytest.approx(100.0)
            met = drivers.make_device("meter", srv.endpoint, 126, "sunspec-meter", timeout_s=0.5)
            rm = await met.read()
            assert rm.power_kw == pytest.approx(-25.0)
            assert rm.phases_kw is None  # phase C is "not implemented" (0x8000)
            assert (rm.energy_import_kwh, rm.energy_export_kwh) == pytest.approx((98.765, 4.321))
            assert met.health.errors["decode"] == 0  # not-implemented is not an error
            await inv.bus.close()
    run(main())


def test_sunspec_missing_marker_is_a_decode_error() -> None:
    async def main() -> None:
        async with RegisterServer({1: Unit()}, span=(0, 60000)) as srv:
            met = drivers.make_device("meter", srv.endpoint, 1, "sunspec-meter", timeout_s=0.5)
            with pytest.raises(drivers.DeviceError, match="no SunSpec marker"):
                await met.read()
            assert met.health.errors["decode"] == 1
            await met.bus.close()
    run(main())
