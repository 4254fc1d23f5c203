"""A grid meter answering random words for 4 s: the stale-meter mode comes on once and
stays on (no flapping on the reads that happen to pass every check), then goes off once
after the fault is cleared. Before the plausibility rules (drivers/device.py, the meter's
phase sum) and the agent's hysteresis (agent/control/devices.py) it flipped ~8 times."""

from __future__ import annotations

import asyncio

import pytest

from .harness import Scenario
from .test_devices import loaded

pytestmark = pytest.mark.timeout(60)


def test_garbage_meter_does_not_flap_the_degraded_mode(tmp_path):
    async def scenario() -> None:
        async with Scenario(tmp_path) as sc:
            await loaded(sc)
            sc.sim.inject("meter", "garbage", mode="random")
            await sc.agent.wait_log(r"degraded mode on: grid_meter_stale")
            await sc.run_for(4.0)  # 40 cycles of garbage; capacity and cycling checked
            sc.check_invariants()
            sc.sim.clear("meter")
            await sc.agent.wait_log(r"degraded mode off: grid_meter_stale")
            await asyncio.sleep(1.0)  # nothing flips after recovery either
            on = [e for e in sc.events("degraded_on") if "grid_meter_stale" in e["data"]]
            off = [e for e in sc.events("degraded_off") if "grid_meter_stale" in e["data"]]
            assert (len(on), len(off)) == (1, 1), sc.agent.log()[-3000:]
            sc.check_invariants()

    asyncio.run(scenario())
