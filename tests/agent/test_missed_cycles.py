"""A stall of the event loop (a blocking call, a huge request) is counted: every slot no
cycle ran in is an overrun (`missed`), and no watchdog ping follows the stall until a cycle
ran on time again."""

from __future__ import annotations

import asyncio
import time

import pytest
from hardware_sim.simulator import Simulator
from sim_agent import STATION, agent_settings

from agent.app.assembly import build_control
from agent.control.devices import StationDevices
from agent.model.clock import RealClock
from agent.store import connect

pytestmark = pytest.mark.timeout(60)


class Pings:
    watchdog_interval_s = 0.2

    def __init__(self) -> None:
        self.at: list[float] = []

    def watchdog(self) -> None:
        self.at.append(time.monotonic())

    def status(self, text: str) -> None:
        pass


def test_a_stall_counts_its_missed_slots_and_pings_no_watchdog(tmp_path):
    async def main() -> None:
        async with Simulator(STATION, rtu_meter=False) as sim:
            cfg = agent_settings(sim.endpoints, tmp_path / "agent.db")
            loop = build_control(cfg, connect(cfg.storage.db_path), StationDevices(cfg), RealClock())
            pings = Pings()
            loop.notifier = pings  # type: ignore[assignment]
            await loop.start()
            stalled: list[float] = []

            def stall_once() -> None:
                if loop.stats.cycles == 10 and not stalled:
                    time.sleep(1.0)  # blocks the event loop: ten 100 ms slots pass unserved
                    stalled.append(time.monotonic())

            loop.between_cycles.append(stall_once)
            stop = asyncio.Event()
            try:
                await loop.run(stop, max_cycles=20)
            finally:
                await loop.shutdown()
                await loop.devices.close()
            assert stalled
            assert loop.stats.missed >= 8  # 10 slots, less what a loaded machine blurs
            assert loop.stats.overruns >= loop.stats.missed
            assert loop.stats.summary()["missed"] == loop.stats.missed
            # No ping right after the stall: the first one comes after an on-time cycle.
            after = [t for t in pings.at if t >= stalled[0]]
            assert after and after[0] - stalled[0] >= 0.05

    asyncio.run(main())
