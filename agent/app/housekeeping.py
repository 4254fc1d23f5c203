"""Housekeeping the daemon runs beside the control loop, off its path.

Ended cloud signals are forgotten once they are `KEEP_ENDED` old (agent/store/signals.py):
without it every price and cap look-up of every cycle scans every signal ever stored
(10.8 ms per cycle after a year of caps, issue 11).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from typing import TYPE_CHECKING

from agent.model.clock import Clock

if TYPE_CHECKING:
    from agent.store.signals import Signals

log = logging.getLogger(__name__)
PRUNE_EVERY_S = 3600.0


async def prune_signals(
    signals: Signals, clock: Clock, stop: asyncio.Event, every_s: float = PRUNE_EVERY_S
) -> None:
    """Prune at start, then every `every_s`, until `stop`; a store refusing the delete
    (disk full, locked) is tried again at the next round."""
    while not stop.is_set():
        try:
            pruned = signals.prune(clock.now())
        except sqlite3.Error as exc:
            log.warning("ended signals not pruned (%s); next try in %.0f s", exc, every_s)
        else:
            if pruned:
                log.info("%d ended signals pruned", pruned)
        try:
            await asyncio.wait_for(stop.wait(), timeout=every_s)
        except TimeoutError:
            pass
