"""The control loop against the simulator over real sockets, in real time (period 100 ms)."""

from __future__ import annotations

import asyncio

import pytest
from hardware_sim.simulator import Simulator
from sim_agent import STATION, agent_settings, cycles, ev

from agent.control.controller import Controller
from agent.control.devices import DeviceStatus, StationDevices
from agent.control.loop import ControlLoop
from agent.control.sessions import SessionTracker
from agent.control.stats import CycleStats
from agent.model.clock import RealClock
from agent.state.station_state import StationState
from agent.store import connect

pytestmark = pytest.mark.timeout(60)


def commanded(sim, cid, idx):
    return next(
        c["commandedLimit"] for c in sim.state()["connectors"]
        if c["chargerId"] == cid and c["idx"] == idx
    )  # fmt: skip


async def agent(sim, tmp_path, **control):
    cfg = agent_settings(sim.endpoints, tmp_path / "agent.db", **control)
    devices = StationDevices(cfg)
    clock = RealClock()
    sessions = SessionTracker(connect(cfg.storage.db_path), clock)
    state = StationState(cfg, CycleStats(), DeviceStatus(devices))
    loop = ControlLoop(cfg, devices, Controller(cfg, sessions), clock, state.stats, state=state)
    await loop.start()
    return loop


def test_plug_in_gets_a_limit_within_two_cycles_and_grid_stays_under_capacity(tmp_path):
    asyncio.run(_plug_in_and_capacity(tmp_path))


async def _plug_in_and_capacity(tmp_path):
    async with Simulator(STATION, rtu_meter=False) as sim:
        loop = await agent(sim, tmp_path)
        try:
            # The start-up writes lower the chargers' power-on limits: increases wait
            # until they can have been followed (control.limit_follow_s, 1.5 s).
            await cycles(loop, 3 + 15)
            assert commanded(sim, "CP1", 1) == 0.0  # vacant connectors are closed
            ev(sim, "CP1", 1, 50.0)
            await cycles(loop, 2)
            assert commanded(sim, "CP1", 1) > 4.0
            # Arrivals, a base load step and a departure: the grid import stays under
            # capacity (2 % tolerance for at most 1 s, the chargers' reaction time).
            await cycles(loop, 10)
            ev(sim, "CP2", 1, 22.0)
            ev(sim, "CP1", 2, 50.0)
            await cycles(loop, 15)
            sim.set(base_load_kw=25.0)
            await cycles(loop, 15)
            sim.unplug("CP1", 1)
            await cycles(loop, 15)
            episodes = sim.overload_episodes(0.02)
            assert all(duration <= 1.0 for _, duration, _ in episodes), episodes
            state = sim.state()
            assert state["gridImport"] > 50.0  # and the capacity is actually used
            assert loop.controller.sessions.started == 3
            assert loop.controller.sessions.stopped == 1
            # Only the first cycle may overrun: it opens the connections and loads the
            # allocator kernel.
            assert loop.stats.overruns <= 1
        finally:
            await loop.shutdown()
            await loop.devices.close()
