"""A charger whose fallback (safe) current is fixed in its own configuration (Alfen's ACE
setting, read-only over Modbus) and larger than its share: the agent lowers the other
chargers' fallbacks around it, and when the agent then goes silent the station stays
under its capacity - measured on the simulator's side."""

from __future__ import annotations

import asyncio
import time

import pytest
from hardware_sim.simulator import Simulator
from sim_agent import CAPACITY_KW, PESSIMISTIC_BASE_KW, STATION, agent_settings, cycles, ev

from agent.app.assembly import build_control
from agent.control.devices import StationDevices
from agent.control.fallbacks import resize
from agent.model.clock import RealClock
from agent.store import connect

pytestmark = pytest.mark.timeout(60)


def test_resize_takes_the_excess_from_the_others() -> None:
    shares = {"a": 30.0, "b": 10.0, "c": 20.0}
    out = resize(shares, {"b": 16.0})
    # b's 6 kW excess comes from a and c in proportion to their shares (30:20)
    assert out == pytest.approx({"a": 26.4, "c": 17.6})
    assert sum(out.values()) + 16.0 == pytest.approx(sum(shares.values()))
    assert resize(shares, {"b": 70.0}) is None  # more than the others can give


async def _run(tmp_path):  # type: ignore[no-untyped-def]
    async with Simulator(STATION, rtu_meter=False, profiles={"CP2": "alfen-ng9xx"}) as sim:
        sim.set(base_load_kw=10.0, pv_kw=0.0)
        cp2 = sim.model.chargers["CP2"]
        cp2.fallback_kw = 22.0  # the installer left the safe current at 32 A
        cp2.comm_timeout_s = 2.0  # the ACE validity time
        deadline = time.monotonic() + 10.0  # until the simulator's registers show it
        while sim.devices["CP2"].image.get("fallback_limit", 1) < 30.0:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        settings = agent_settings(sim.endpoints, tmp_path / "agent.db")
        loop = build_control(settings, connect(settings.storage.db_path),
                             StationDevices(settings), RealClock())
        await loop.start()
        try:
            await cycles(loop, 5)
            ev(sim, "CP1", 1, 50.0)
            ev(sim, "CP1", 2, 50.0)
            ev(sim, "CP2", 1, 22.0)
            await cycles(loop, 20)
        finally:
            await loop.shutdown()
            await loop.devices.close()
        cp1_fallback = sim.state()["chargers"]["CP1"]["fallbackLimit"]
        # The agent is gone: wait (bounded) until both chargers have timed out.
        deadline = time.monotonic() + 15.0
        while time.monotonic() < deadline and not all(
                c["timedOut"] for c in sim.state()["chargers"].values()):
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.0)  # the chargers settle on their fallbacks
        state = sim.state()
        assert all(c["timedOut"] for c in state["chargers"].values())
        # from start through shutdown to the fallbacks, never over for more than a second
        episodes = sim.overload_episodes(0.02)
        assert all(duration <= 1.0 for _, duration, _ in episodes), episodes
        return cp1_fallback, state["gridImport"]


def test_others_sized_around_a_fixed_fallback(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cp1_fallback, grid = asyncio.run(_run(tmp_path))
    # shares of 60 - 30 kW (the pessimistic base load) by max power: CP1 20.83, CP2 9.17;
    # CP2 is fixed at 22 kW, so CP1's two connectors get (20.83 - 12.83) / 2 = 4.0 kW each
    spare = CAPACITY_KW - PESSIMISTIC_BASE_KW
    cp1_share, cp2_share = spare * 50.0 / 72.0, spare * 22.0 / 72.0
    assert cp1_fallback == pytest.approx((cp1_share - (22.0 - cp2_share)) / 2, abs=0.05)
    assert grid <= CAPACITY_KW * 1.02
