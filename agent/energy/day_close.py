"""The billing day's close, its battery refill priced off the control loop (issue 16).

At midnight UTC the ledger recorder builds the day's `savings` message at once (sums of
the day's intervals, cheap) and, when the battery ended the day below its start, hands
the refill's two small LPs (`savings.refill_cost`) to one worker thread the recorder owns:
11-53 ms on the control loop before, which the loop no longer waits for. The message (and
the day's last `ledger` row's `refill_eur`) is completed on the loop's thread by a later
cycle that finds the pricing done (`settle(wait=False)` each cycle), so the SQLite
connection and the uplink hook are only ever used from the loop.

Lossless and ordered: the day's message is emitted exactly once, before any later
`savings` message (the next interval's close waits for it) and at shutdown (`flush`
waits for it, at most `SETTLE_WAIT_S`). A pricing that fails, or is not done within that
wait, is charged `savings.refill_bound` (never lower than the LP's). The worker prices
the day's own ledger object, which the recorder replaced at midnight and no longer
writes, so the next day's intervals cannot mix in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime
from typing import Any

log = logging.getLogger(__name__)

# HiGHS time limit of each of the refill's two LPs; one hitting it is charged the bound.
REFILL_TIME_LIMIT_S = 0.5
# The longest a later message or a shutdown waits for a pricing still running: both LPs at
# their limit and building them, with room for a loaded machine.
SETTLE_WAIT_S = 5.0


@dataclass
class DayClose:
    """A closed billing day whose message waits for its refill (or needs none)."""

    day: datetime  # UTC midnight the day began
    payload: dict[str, Any]  # the day message, refill not yet in its cost
    start_kwh: float | None
    end_kwh: float | None
    refill_eur: float | None = None  # known at once: 0 (nothing short) or None (unknown)
    bound: float = 0.0  # charged if the pricing fails or is not done in time
    future: Future[float] | None = None

    def ready(self) -> bool:
        return self.future is None or self.future.done()

    def result(self, wait_s: float) -> float | None:
        """The refill in EUR: the LP's, else the bound (failed, or not done in `wait_s`)."""
        if self.future is None:
            return self.refill_eur
        try:
            return self.future.result(timeout=wait_s)
        except FutureTimeout:
            log.warning("battery refill of %s not priced within %.1f s: charged its bound,"
                        " %.2f EUR", self.day.date(), wait_s, self.bound)
        except Exception:
            log.exception("battery refill of %s not priced: charged its bound, %.2f EUR",
                          self.day.date(), self.bound)
        return self.bound


class RefillWorker:
    """One worker thread, started at the first refill to price and stopped by `close()`
    (a later refill starts it again)."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, fn: Callable[..., float], *args: Any, **kwargs: Any) -> Future[float]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sems-refill")
        return self._pool.submit(fn, *args, **kwargs)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
