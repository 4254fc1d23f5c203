"""Per-device communication health: online state, latency percentiles, errors by kind."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

# "model": a SunSpec device lacks every model its profile reads (wrong profile or device).
ERROR_KINDS = ("timeout", "exception", "decode", "invalid", "disconnected", "model")


@dataclass(frozen=True, slots=True)
class Health:
    """Snapshot of one device's health (times are Unix seconds, ages seconds)."""

    online: bool
    last_ok_ts: float | None
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    errors: dict[str, int]
    last_error: str | None
    consecutive_failures: int
    value_ages_s: dict[str, float] = field(default_factory=dict)
    missing: str = ""  # SunSpec models the profile reads but the device lacks (and their points)


def _percentile(sorted_values: list[float], q: float) -> float:
    # nearest-rank percentile: no interpolation needed for a monitoring figure
    idx = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[idx]


class HealthTracker:
    """Mutable state behind `Health`; a device goes offline after `offline_after` failed
    reads in a row and back online on the first good one."""

    def __init__(self, *, offline_after: int = 2, window: int = 512,
                 clock: Callable[[], float] = time.monotonic,
                 wallclock: Callable[[], float] = time.time) -> None:
        self.offline_after = offline_after
        self._clock = clock
        self._wallclock = wallclock
        self._latencies: deque[float] = deque(maxlen=window)
        self.errors = dict.fromkeys(ERROR_KINDS, 0)
        self.online = False
        self.last_ok_ts: float | None = None
        self.last_error: str | None = None
        self.consecutive_failures = 0
        self._value_seen: dict[Hashable, float] = {}
        self.missing = ""

    def latency(self, latency_s: float) -> None:
        self._latencies.append(latency_s * 1000.0)

    def ok(self) -> None:
        self.online = True
        self.consecutive_failures = 0
        self.last_ok_ts = self._wallclock()

    def failed(self, kind: str, message: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        self.last_error = message
        self.consecutive_failures += 1
        if self.consecutive_failures >= self.offline_after:
            self.online = False

    def value_error(self, kind: str, message: str) -> None:
        """A bad value in an otherwise good answer: counted, does not take the device offline."""
        self.errors[kind] = self.errors.get(kind, 0) + 1
        self.last_error = message

    def value_ok(self, key: Hashable, at: float | None = None) -> None:
        """`at`: the read's time on this tracker's clock (one clock call per read, not per value)."""
        self._value_seen[key] = self._clock() if at is None else at

    def snapshot(self) -> Health:
        lat = sorted(self._latencies)
        now = self._clock()
        return Health(
            online=self.online,
            last_ok_ts=self.last_ok_ts,
            latency_p50_ms=_percentile(lat, 0.50) if lat else None,
            latency_p99_ms=_percentile(lat, 0.99) if lat else None,
            errors=dict(self.errors),
            last_error=self.last_error,
            consecutive_failures=self.consecutive_failures,
            value_ages_s={_key_name(k): now - t for k, t in self._value_seen.items()},
            missing=self.missing,
        )


def _key_name(key: Hashable) -> str:
    if isinstance(key, tuple):
        return f"{key[0]}[{key[1]}]"
    return str(key)
