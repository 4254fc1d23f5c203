"""The billing day's close, its battery refill priced off the control loop (issue 16).

At midnight UTC the ledger recorder builds the day's `savings` message at once (sums of
the day's intervals, cheap) and, when the battery ended the day below its start, hands
the refill's two small LPs (`savings.refill_cost`) to one worker thread the recorder owns
(started with the recorder when the station has a battery):
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
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime
from queue import SimpleQueue
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
    # The pricing (`savings.refill_cost`), for the worker, and `savings.refill_bound`,
    # charged if the pricing fails or is not done in time.
    job: Callable[[], float] | None = None
    bound: Callable[[], float] = lambda: 0.0
    future: Future[float] | None = None

    def start(self, worker: RefillWorker) -> None:
        """Hand the pricing to the worker (once)."""
        if self.job is not None and self.future is None:
            self.future = worker.submit(self.job)

    def ready(self) -> bool:
        return self.job is None or (self.future is not None and self.future.done())

    def result(self, wait_s: float) -> float | None:
        """The refill in EUR: the LP's, else the bound (failed, or not done in `wait_s`)."""
        if self.job is None:
            return self.refill_eur
        failure: BaseException | None = None
        try:
            assert self.future is not None, "result() before start()"
            return self.future.result(timeout=wait_s)
        except FutureTimeout:
            why = f"not priced within {wait_s:.1f} s"
        except Exception as exc:
            why, failure = "not priced", exc
        try:
            bound = self.bound()
        except Exception:  # the message still goes out, its refill unknown
            log.exception("battery refill of %s %s, nor bounded", self.day.date(), why)
            return None
        log.warning("battery refill of %s %s: charged its bound, %.2f EUR", self.day.date(),
                    why, bound, exc_info=failure)
        return bound


class RefillWorker:
    """One worker thread (a daemon thread: it never holds a shutdown, `flush` waits for the
    day's pricing instead). `start()` ahead of the first refill: starting a thread waits
    for it to run, and a thread started at midnight would take the interpreter lock from
    the rest of that cycle (5 ms measured). `close()` ends it; a later `submit` starts it
    again."""

    def __init__(self) -> None:
        self._queue: SimpleQueue[tuple[Callable[[], float], Future[float]] | None] | None = None

    def start(self) -> None:
        if self._queue is None:
            self._queue = SimpleQueue()
            threading.Thread(target=_work, args=(self._queue,), name="sems-refill",
                             daemon=True).start()  # fmt: skip

    def submit(self, fn: Callable[[], float]) -> Future[float]:
        self.start()
        assert self._queue is not None
        future: Future[float] = Future()
        self._queue.put((fn, future))
        return future

    def close(self) -> None:
        if self._queue is not None:
            self._queue.put(None)
            self._queue = None


def _work(queue: SimpleQueue[tuple[Callable[[], float], Future[float]] | None]) -> None:
    while (item := queue.get()) is not None:
        fn, future = item
        if not future.set_running_or_notify_cancel():
            continue
        try:
            future.set_result(fn())
        except BaseException as exc:  # the loop's side logs it and charges the bound
            future.set_exception(exc)
