"""Ended cloud signals are pruned on a schedule, so look-ups stop scanning old ones."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from agent.app.housekeeping import prune_signals
from agent.model.clock import RealClock
from agent.store import connect
from agent.store.signals import KEEP_ENDED, PowerCap, Signals


def test_ended_signals_are_pruned_on_schedule_and_live_ones_kept(tmp_path):
    clock = RealClock()
    now = clock.now()
    signals = Signals(connect(tmp_path / "s.db"))
    old_end = now - KEEP_ENDED - timedelta(hours=1)
    signals.set_power_cap(PowerCap(id="old", cap_kw=50, start=old_end - timedelta(hours=2), end=old_end))
    signals.set_power_cap(PowerCap(id="live", cap_kw=40, start=now - timedelta(hours=1),
                                   end=now + timedelta(hours=1)))  # fmt: skip

    def ids() -> set[str]:
        return {r[0].split(":", 1)[1] for r in signals.conn.execute("SELECT id FROM signals")}

    assert ids() == {"old", "live"}

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(prune_signals(signals, clock, stop, every_s=0.05))
        deadline = time.monotonic() + 30
        while "old" in ids() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        # Another ended signal arrives: the next round prunes it too.
        signals.set_power_cap(PowerCap(id="old2", cap_kw=50, start=old_end - timedelta(hours=2),
                                       end=old_end))  # fmt: skip
        while "old2" in ids() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, timeout=10)

    asyncio.run(scenario())
    assert ids() == {"live"}
    assert signals.active_power_cap(clock.now()) == 40
