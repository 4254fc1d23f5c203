"""Every capability driver against the hardware simulator (hardware-sim/), over its real
TCP ports and its RTU pseudo-terminal, including every fault it can inject."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import hardware_sim
import pytest

import drivers

STATION = {
    "stationId": "drv-test", "gridCapacity": 150, "pvPeak": 20,
    "battery": {"capacity": 100, "maxChargePower": 50, "maxDischargePower": 50, "soc": 0.6},
    "chargers": [{"id": "c1", "maxPower": 22, "connectors": 2}, {"id": "c2", "maxPower": 50}],
}
T = 0.25  # driver timeout in these tests


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 60))


def tcp(entry: dict[str, Any]) -> str:
    return f"tcp://{entry['tcp']}"


def station_devices(sim: Any) -> dict[str, Any]:
    ep = sim.endpoints
    devs: dict[str, Any] = {
        "meter": drivers.make_device("meter", tcp(ep["meter"]), ep["meter"]["unit"], ep["meter"]["profile"], timeout_s=T),
        "bms": drivers.make_device("battery", tcp(ep["bms"]), ep["bms"]["unit"], ep["bms"]["profile"], timeout_s=T),
        "inverter": drivers.make_device("inverter", tcp(ep["inverter"]), ep["inverter"]["unit"],
                                        ep["inverter"]["profile"], timeout_s=T),
    }
    for cid, entry in ep["chargers"].items():
        devs[cid] = drivers.make_device("charger", tcp(entry), entry["unit"], entry["profile"],
                                        timeout_s=T, connectors=entry["connectors"])
    return devs


async def close_all(devs: dict[str, Any]) -> None:
    for d in devs.values():
        await d.bus.close()


def test_readings_match_the_simulated_station() -> None:
    async def main() -> None:
        async with hardware_sim.Simulator(STATION, clock=hardware_sim.ManualClock()) as sim:
            sim.set(base_load_kw=30.0, pv_kw=8.0)
            sim.plug("c1", 1, max_kw=11.0, capacity_kwh=60, soc=0.3, energy_needed_kwh=20)
            sim.advance(30.0)
            devs = station_devices(sim)
            await devs["c1"].set_limit(1, 7.0)
            await devs["c1"].set_fallback(4.0, 60)
            await devs["c1"].heartbeat()
            sim.advance(30.0)
            truth = sim.state()
            meter, bms, inv, c1, c2 = await asyncio.gather(
                devs["meter"].read(), devs["bms"].read(), devs["inverter"].read(),
                devs["c1"].read(), devs["c2"].read())
            assert meter.power_kw == pytest.approx(truth["gridImport"], abs=0.05)
            assert meter.phases_kw is not None and sum(meter.phases_kw) == pytest.approx(meter.power_kw, abs=0.05)
            assert meter.energy_import_kwh is not None and meter.energy_import_kwh >= 0
            assert inv.pv_kw == pytest.approx(8.0, abs=0.05)
            assert bms.soc_pct is not None and 0 < bms.soc_pct <= 100
            assert bms.max_discharge_kw is not None and bms.max_discharge_kw > 0
            conn = {(c["chargerId"], c["idx"]): c for c in truth["connectors"]}
            first = c1.connectors[0]
            assert first.state == conn[("c1", 1)]["state"] == "C"
            assert first.power_kw == pytest.approx(conn[("c1", 1)]["power"], abs=0.05)
            assert 0 < first.power_kw <= 7.0 + 0.05
            assert first.limit_kw == pytest.approx(7.0, abs=0.01)
            assert first.session_energy_kwh == pytest.approx(conn[("c1", 1)]["sessionEnergy"], abs=0.01)
            assert c1.connectors[1].state == "A" and c2.connectors[0].state == "A"
            assert c1.max_power_kw == pytest.approx(22.0)
            for name, d in devs.items():
                assert d.health.online, name
            await devs["inverter"].set_battery_setpoint(5.0)
            await close_all(devs)
    run(main())


def test_meter_and_bms_over_the_rtu_line() -> None:
    async def main() -> None:
        async with hardware_sim.Simulator(STATION, clock=hardware_sim.ManualClock()) as sim:
            sim.set(base_load_kw=12.0, pv_kw=0.0)
            sim.advance(5.0)
            ep = sim.endpoints
            line = f"rtu://{ep['meter']['rtu']}?baudrate=115200"
            meter = drivers.make_device("meter", line, ep["meter"]["unit"], "sim-meter", timeout_s=0.3)
            bms = drivers.make_device("battery", line, ep["bms"]["unit"], "sim-bms", timeout_s=0.3)
            assert meter.bus is bms.bus
            rm, rb = await asyncio.gather(meter.read(), bms.read())
            assert rm.power_kw == pytest.approx(sim.state()["gridImport"], abs=0.05)
            assert rb.soc_pct == pytest.approx(60.0, abs=1.0)
            # an id nobody owns on the line stays silent (no exception from a neighbour)
            stranger = drivers.make_device("meter", line, 99, "sim-meter", timeout_s=0.2)
            with pytest.raises(drivers.DeviceError) as err:
                await stranger.read()
            assert err.value.kind == "timeout"
            # corrupted frames: the meter goes offline, the BMS on the same line is unaffected
            sim.inject("meter", "corrupt")
            for _ in range(2):
                with pytest.raises(drivers.DeviceError) as err:
                    await meter.read()
                assert err.value.kind == "timeout"
            assert not meter.health.online
            assert (await bms.read()).soc_pct is not None and bms.health.online
            sim.clear("meter")
            assert (await meter.read()).power_kw is not None and meter.health.online
            await meter.bus.close()
    run(main())


@pytest.mark.parametrize(("fault", "params", "kind"), [
    ("silent", {}, "timeout"),
    ("exception", {"code": 4}, "exception"),
    ("slow", {"delay": 1.0}, "timeout"),
])
def test_faults_take_the_device_offline_and_back(fault: str, params: dict[str, Any], kind: str) -> None:
    async def main() -> None:
        async with hardware_sim.Simulator(STATION, clock=hardware_sim.ManualClock(), rtu_meter=False) as sim:
            sim.advance(1.0)
            devs = station_devices(sim)
            await asyncio.gather(*(d.read() for d in devs.values()))
            sim.inject("bms", fault, **params)
            for _ in range(2):
                t0 = time.monotonic()
                results = await asyncio.gather(*(d.read() for d in devs.values()), return_exceptions=True)
                elapsed = time.monotonic() - t0
                by_name = dict(zip(devs, results, strict=True))
                assert isinstance(by_name["bms"], drivers.DeviceError) and by_name["bms"].kind == kind
                assert all(not isinstance(r, BaseException) for n, r in by_name.items() if n != "bms")
                assert elapsed < T + 0.2  # the faulty device costs its own timeout, no more
            h = devs["bms"].health
            assert not h.online and h.errors[kind] == 2 and h.last_error
            assert all(devs[n].health.online for n in devs if n != "bms")
            sim.clear("bms")
            for _ in range(20):  # a slow device's late answers are discarded, then it is back
                try:
                    await devs["bms"].read()
                    break
                except drivers.DeviceError:
                    await asyncio.sleep(0.1)
            assert devs["bms"].health.online
            await close_all(devs)
    run(main())


def test_garbage_values_are_never_used() -> None:
    async def main() -> None:
        async with hardware_sim.Simulator(STATION, clock=hardware_sim.ManualClock(), rtu_meter=False) as sim:
            sim.advance(1.0)
            devs = station_devices(sim)
            sim.inject("meter", "garbage", mode="nan")
            sim.inject("inverter", "garbage", mode="nan")
            r = await devs["meter"].read()
            assert (r.power_kw, r.phases_kw, r.energy_import_kwh) == (None, None, None)
            ri = await devs["inverter"].read()
            assert (ri.pv_kw, ri.battery_kw) == (None, None)
            sim.inject("c1", "garbage", mode="random")
            sim.inject("bms", "garbage", mode="random")
            for _ in range(5):  # random words: whatever survives the checks is in range
                rc = await devs["c1"].read()
                for c in rc.connectors:
                    assert c.state in (None, "A", "B", "C", "D", "E", "F")
                    assert c.session_energy_kwh is None or c.session_energy_kwh >= 0
                    assert c.limit_kw is None or c.limit_kw >= 0
                rb = await devs["bms"].read()
                assert rb.soc_pct is None or 0 <= rb.soc_pct <= 100
                assert rb.temp_max_c is None or -40 <= rb.temp_max_c <= 100
            assert devs["meter"].health.online and devs["meter"].health.errors["decode"] > 0
            # The random words were seen and refused (not merely absent): each device counted
            # invalid or undecodable values, so the range checks above ran on values that needed them.
            assert all(sum(devs[n].health.errors.get(k, 0) for k in ("decode", "invalid")) > 0
                       for n in ("c1", "bms"))
            for name in ("meter", "inverter", "c1", "bms"):
                sim.clear(name)
            # A value that was invalid is trusted again from its second plausible read on.
            assert (await devs["meter"].read()).power_kw is None
            assert (await devs["meter"].read()).power_kw is not None
            await close_all(devs)
    run(main())


def test_dropped_connection_then_reconnect() -> None:
    async def main() -> None:
        async with hardware_sim.Simulator(STATION, clock=hardware_sim.ManualClock(), rtu_meter=False) as sim:
            sim.advance(1.0)
            devs = station_devices(sim)
            await devs["c2"].read()
            sim.inject("c2", "drop", duration=0.6)
            await asyncio.sleep(0.05)
            kinds = set()
            for _ in range(2):
                with pytest.raises(drivers.DeviceError) as err:
                    await devs["c2"].read()
                kinds.add(err.value.kind)
            assert kinds <= {"disconnected", "timeout"} and "disconnected" in kinds
            assert not devs["c2"].health.online
            assert (await devs["c1"].read()).connectors  # others unaffected
            for _ in range(40):
                try:
                    await devs["c2"].read()
                    break
                except drivers.DeviceError:
                    await asyncio.sleep(0.1)
            assert devs["c2"].health.online
            await close_all(devs)
    run(main())
