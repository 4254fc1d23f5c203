"""Cycle statistics for the health report, the CLI and the benchmark."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np


@dataclass
class CycleStats:
    window: int = 2400  # cycles kept for percentiles: 10 minutes at 4 Hz
    cycles: int = 0
    overruns: int = 0  # cycles that took longer than a period, plus missed slots
    missed: int = 0  # slots no cycle ran in (the event loop was blocked: a stall)
    max_ms: float = 0.0
    _durations: deque[float] = field(default_factory=deque, repr=False)
    _reads: dict[str, deque[float]] = field(default_factory=dict, repr=False)
    read_errors: dict[str, int] = field(default_factory=dict)

    def record_cycle(self, duration_s: float, period_s: float) -> None:
        ms = duration_s * 1000.0
        self.cycles += 1
        if duration_s > period_s:
            self.overruns += 1
        self.max_ms = max(self.max_ms, ms)
        self._durations.append(ms)
        if len(self._durations) > self.window:
            self._durations.popleft()

    def record_missed(self, slots: int) -> None:
        """Slots skipped because the loop woke late: each is an overrun too."""
        self.missed += slots
        self.overruns += slots

    def record_read(self, device: str, duration_s: float | None) -> None:
        """One device read: its duration, or None when it failed or missed the deadline."""
        if duration_s is None:
            self.read_errors[device] = self.read_errors.get(device, 0) + 1
            return
        q = self._reads.setdefault(device, deque(maxlen=self.window))
        q.append(duration_s * 1000.0)

    def summary(self) -> dict:
        """JSON-ready: cycles, overruns, cycle_ms {p50, p99, max}, read_ms per device."""
        return {
            "cycles": self.cycles,
            "overruns": self.overruns,
            "missed": self.missed,
            "cycle_ms": _percentiles(self._durations, self.max_ms),
            "read_ms": {
                name: _percentiles(q, max(q) if q else 0.0) for name, q in self._reads.items()
            },
            "read_errors": dict(self.read_errors),
        }


def _percentiles(values: deque[float], worst: float) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p99": 0.0, "max": round(worst, 3)}
    arr = np.fromiter(values, dtype=float, count=len(values))
    p50, p99 = np.percentile(arr, [50, 99])
    return {"p50": round(float(p50), 3), "p99": round(float(p99), 3), "max": round(worst, 3)}
