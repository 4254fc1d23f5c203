"""Device faults injected into a running `sems run` against the simulator: the grid meter,
a charger or the BMS going silent, corrupted RTU frames, garbage register values.

Each scenario loads the station near its capacity, injects the fault, and checks: the
simulated grid import stays within capacity (2 % for at most 1 s), the agent keeps
cycling (watchdog pings continue), a clear log line, the degraded mode in the health
state (systemd STATUS= and the event log), and recovery once the fault is cleared.
"""

from __future__ import annotations

import asyncio

import pytest

from .harness import BATTERY_STATION, Scenario

pytestmark = pytest.mark.timeout(60)


async def loaded(sc: Scenario, base_load_kw: float = 20.0) -> None:
    """Two EVs asking for more than the grid gives: the capacity is in use."""
    sc.sim.set(base_load_kw=base_load_kw, pv_kw=0.0)
    await sc.start_agent()  # first, so the EVs never see a charger without its limit
    sc.ev("CP1", 1, 50.0)
    sc.ev("CP2", 1, 22.0)
    await sc.wait_for(lambda: sc.sim.state()["gridImport"] > 50.0, 15, "capacity in use")


def test_grid_meter_silent(tmp_path):
    async def scenario() -> None:
        async with Scenario(tmp_path) as sc:
            await loaded(sc)
            sc.sim.inject("meter", "silent")
            await sc.agent.wait_log(rf"WARNING .*{sc.label('meter')} offline: .*no answer within")
            await sc.agent.wait_log(r"degraded mode on: grid_meter_stale")
            sc.ev("CP1", 2, 50.0)  # an arrival while blind gets only confirmed headroom
            await sc.run_for(3.0)
            assert "degraded: grid_meter_stale" in sc.agent.notify.status()
            assert [e["data"] for e in sc.events("degraded_on")] == ['{"mode": "grid_meter_stale"}']
            deps = (await sc.health())["dependencies"]
            assert deps["control"] == {"state": "degraded", "detail": "grid_meter_stale"}
            assert deps["devices"]["state"] == "degraded" and "meter" in deps["devices"]["detail"]
            sc.check_invariants()
            sc.sim.clear("meter")
            await sc.agent.wait_log(r"degraded mode off: grid_meter_stale")
            await sc.run_for(1.0)
            sc.check_invariants()
            assert await sc.agent.stop() == 0

    asyncio.run(scenario())


def test_charger_silent(tmp_path):
    async def scenario() -> None:
        async with Scenario(tmp_path) as sc:
            await loaded(sc, base_load_kw=10.0)
            sc.sim.inject("CP2", "silent")
            await sc.agent.wait_log(rf"WARNING .*{sc.label('CP2')} offline: .*no answer within")
            await sc.agent.wait_log(r"degraded mode on: charger_unreachable:CP2")
            sc.ev("CP1", 2, 50.0)
            await sc.run_for(3.0)
            assert "charger_unreachable:CP2" in sc.agent.notify.status()
            deps = (await sc.health())["dependencies"]
            assert "charger_unreachable:CP2" in deps["control"]["detail"]
            assert "CP2" in deps["devices"]["detail"]
            sc.check_invariants()
            sc.sim.clear("CP2")
            await sc.agent.wait_log(r"degraded mode off: charger_unreachable:CP2")
            await sc.run_for(1.0)
            sc.check_invariants()
            assert not sc.sim.state()["chargers"]["CP2"]["timedOut"]

    asyncio.run(scenario())


def test_bms_silent(tmp_path):
    async def scenario() -> None:
        async with Scenario(tmp_path, station=BATTERY_STATION, battery=True) as sc:
            await loaded(sc, base_load_kw=30.0)
            sc.ev("CP1", 2, 50.0)
            await sc.wait_for(lambda: sc.sim.state()["battery"]["power"] > 5.0, 10, "battery helping")
            sc.sim.inject("bms", "silent")
            await sc.agent.wait_log(rf"WARNING .*{sc.label('bms')} offline: .*no answer within")
            await sc.agent.wait_log(r"degraded mode on: bms_stale")
            # No discharge counted on: the EVs are lowered to what the grid alone gives
            # (60 - 30 base) and the battery is set idle, winding down only out of headroom
            # the meter confirms (battery_order.py), never ahead of the EVs.
            await sc.wait_for(lambda: sum(c["limit"] for c in sc.sim.state()["connectors"])
                              <= 30.0 and sc.sim.state()["battery"]["setpoint"] == 0.0, 10,
                              "EVs on the grid's budget alone, battery idle")  # fmt: skip
            await sc.run_for(2.5)
            assert "bms_stale" in sc.agent.notify.status()
            assert "bms_stale" in (await sc.health())["dependencies"]["control"]["detail"]
            sc.check_invariants()
            sc.sim.clear("bms")
            await sc.agent.wait_log(r"degraded mode off: bms_stale")
            sc.check_invariants()

    asyncio.run(scenario())


def test_rtu_frames_corrupted(tmp_path):
    async def scenario() -> None:
        async with Scenario(tmp_path, rtu_meter=True) as sc:
            await loaded(sc)
            sc.sim.inject("meter", "corrupt")  # every RTU answer with a bad CRC
            await sc.agent.wait_log(rf"WARNING .*{sc.label('meter')} offline")
            await sc.agent.wait_log(r"degraded mode on: grid_meter_stale")
            sc.ev("CP1", 2, 50.0)
            await sc.run_for(3.0)
            sc.check_invariants()
            assert (await sc.health())["dependencies"]["control"]["state"] == "degraded"
            sc.sim.clear("meter")  # the line resynchronises after the bad frames
            await sc.agent.wait_log(r"degraded mode off: grid_meter_stale")
            await sc.run_for(1.0)
            sc.check_invariants()

    asyncio.run(scenario())


@pytest.mark.parametrize("mode", ["random", "nan"])
def test_garbage_register_values(tmp_path, mode):
    async def scenario() -> None:
        async with Scenario(tmp_path) as sc:
            await loaded(sc)
            sc.sim.inject("meter", "garbage", mode=mode)
            # Garbage is refused value by value (range, NaN, impossible jumps), never obeyed.
            await sc.agent.wait_log(rf"WARNING .*{sc.label('meter')}: ignoring power")
            await sc.agent.wait_log(r"degraded mode on: grid_meter_stale")
            sc.ev("CP1", 2, 50.0)
            await sc.run_for(3.0)
            sc.check_invariants()
            sc.sim.clear("meter")
            await sc.agent.wait_log(r"degraded mode off: grid_meter_stale")
            sc.check_invariants()
            await asyncio.sleep(0.3)  # the health view follows within a few cycles
            assert (await sc.health())["dependencies"]["control"]["state"] == "ok"

    asyncio.run(scenario())
