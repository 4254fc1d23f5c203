"""A charger slow to follow a lowered limit: the power it frees is not handed on early.

CP1's charger reacts to a write after 1 s and ramps at 10 kW/s both ways (a slow AC
wallbox and EV); CP2's reacts at once (0.2 s, 100 kW/s). CP1's EV ramps up towards its
38 kW when CP2's EV plugs in: CP1 is lowered to its fair 19 kW while it draws ~16 kW and
still climbs for a second. Were the new 19 kW believed at once, CP2 would get the 19 kW at
once and the grid would see 20 + 26 + 19 = 65 kW on 60. agent/control/limit_lag.py counts
CP1 at its old limit until `limit_follow_s` has passed or its draw has come down.
Import is judged on the simulator's side.
"""

from __future__ import annotations

import asyncio

import pytest

from .harness import CAPACITY_KW, Scenario

pytestmark = pytest.mark.timeout(90)
# No consumption cap: it would lower CP1 by itself while it ramps up.
CONTROL = {"cap_after_s": 60.0}


async def lowered_while_ramping(sc: Scenario) -> float:
    """Runs the episode; returns the simulator's peak import from CP2's plug-in on."""
    cp1, cp2 = sc.sim.model.chargers["CP1"], sc.sim.model.chargers["CP2"]
    cp1.delay_s, cp1.ramp_kw_s = 1.0, 10.0
    cp2.delay_s, cp2.ramp_kw_s = 0.2, 100.0
    sc.sim.set(base_load_kw=20.0, pv_kw=0.0)
    await sc.start_agent()
    sc.ev("CP1", 1, 50.0)
    await sc.wait_for(lambda: sc.connector("CP1", 1)["power"] >= 15.0, 15, "CP1 ramping up")
    start = len(sc.sim.grid_history)
    sc.ev("CP2", 1, 22.0)
    # Both at their fair share and CP1 settled: the episode is over.
    await sc.wait_for(
        lambda: abs(sc.connector("CP1", 1)["power"] - 19.0) < 0.5
        and sc.connector("CP2", 1)["power"] >= 17.0,
        20, "both EVs at their share",
    )  # fmt: skip
    await sc.run_for(1.0)
    return max(kw for _, kw in sc.sim.grid_history[start:])


def test_freed_power_waits_for_the_slow_charger(tmp_path):
    async def scenario() -> float:
        async with Scenario(tmp_path, control=CONTROL) as sc:
            peak = await lowered_while_ramping(sc)
            sc.check_invariants()  # <= 1.02 x capacity, <= 1 s above it
            await sc.agent.stop()
            return peak

    peak = asyncio.run(scenario())
    print(f"peak import {peak:.1f} kW on {CAPACITY_KW:g} kW")
    assert peak <= CAPACITY_KW * 1.02
