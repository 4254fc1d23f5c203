"""Faults logged as episodes: one line when a fault starts, one when it ends (with how long
it lasted and how many times it failed), and a summary every `summary_s` while it lasts.

A control loop retries every cycle: logging each failure gave four lines a second for one
dead inverter. An operator needs the start, the end and a sign of life in between; the
counts per device stay in `sems devices`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

SUMMARY_S = 600.0  # a lasting fault is summarised every 10 minutes


@dataclass
class _Episode:
    started_text: str  # the start line, repeated in summaries
    ended_text: str  # the end line's beginning
    started: float
    failures: int
    summarised: float


class FaultLog:
    def __init__(self, log: logging.Logger, now: Callable[[], float],
                 summary_s: float = SUMMARY_S) -> None:  # fmt: skip
        self.log = log
        self.now = now  # monotonic seconds
        self.summary_s = summary_s
        self._open: dict[str, _Episode] = {}

    def failed(self, key: str, what: str, detail: str, *, ended: str | None = None) -> None:
        """Another failure of `key` (e.g. "setpoint"). The first one logs "what: detail";
        the end logs `ended` (default "what: recovered") with duration and count."""
        ep = self._open.get(key)
        if ep is not None:
            ep.failures += 1
            return
        t = self.now()
        text = f"{what}: {detail}"
        self._open[key] = _Episode(text, ended or f"{what}: recovered", t, 1, t)
        self.log.warning("%s", text)

    def succeeded(self, key: str) -> None:
        ep = self._open.pop(key, None)
        if ep is not None:
            self.log.info("%s after %s%s", ep.ended_text, _duration(self.now() - ep.started),
                          _count(ep.failures))  # fmt: skip

    def tick(self) -> None:
        """Once per cycle: a summary line for each fault lasting `summary_s` more."""
        t = self.now()
        for ep in self._open.values():
            if t - ep.summarised >= self.summary_s:
                ep.summarised = t
                self.log.warning("%s (still, after %s%s)", ep.started_text,
                                 _duration(t - ep.started), _count(ep.failures))  # fmt: skip

    def active(self) -> list[str]:
        return list(self._open)


def _count(failures: int) -> str:
    return f", {failures} failures" if failures > 1 else ""


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
