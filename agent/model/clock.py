"""Injected clocks: the control loop never reads time or sleeps on its own.

`RealClock` is what the daemon uses. `ManualClock` is what tests use: time only moves when
the test says so, so cycle-by-cycle tests are exact and never sleep.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (deadlines, ages, periods)."""

    def now(self) -> datetime:
        """Wall-clock time, timezone-aware UTC (timestamps written to the store)."""

    async def sleep_until(self, deadline: float) -> None:
        """Return once monotonic() >= deadline."""


class RealClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, deadline: float) -> None:
        delay = deadline - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


class ManualClock:
    """A clock a test advances by hand; sleep_until advances it instead of waiting."""

    def __init__(self, start: float = 1000.0, wall: datetime | None = None) -> None:
        self._t = start
        self._t0 = start
        self._wall0 = wall or datetime(2026, 6, 17, 12, 0, tzinfo=UTC)

    def monotonic(self) -> float:
        return self._t

    def now(self) -> datetime:
        return self._wall0 + timedelta(seconds=self._t - self._t0)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._t += seconds

    async def sleep_until(self, deadline: float) -> None:
        if deadline > self._t:
            self._t = deadline
        await asyncio.sleep(0)  # still yield, as a real sleep would


def iso(ts: datetime) -> str:
    """ISO-8601 UTC with milliseconds and a Z, the format of every stored timestamp."""
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
