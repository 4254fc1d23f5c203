"""Per-weekday 15-minute profile learned from the station's own history (PV, base load).

Each (weekday, slot-of-day) cell holds an exponentially smoothed value: a new observation
moves it by `alpha` towards itself, so the profile follows seasons without storing history.
Cells never observed fall back to the same slot on any weekday, then to 0. Pure: the
daemon feeds it meter averages and asks for the next horizon's forecast.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np


class WeekdayProfile:
    def __init__(self, slot_minutes: int = 15, alpha: float = 0.3) -> None:
        if not 0 < alpha <= 1:
            raise ValueError("alpha: must be in (0, 1]")
        if slot_minutes <= 0 or (24 * 60) % slot_minutes:
            raise ValueError("slot_minutes: must divide a day")
        self.slot_minutes = slot_minutes
        self.alpha = alpha
        self.per_day = 24 * 60 // slot_minutes
        self.values = np.zeros((7, self.per_day))
        self.seen = np.zeros((7, self.per_day), dtype=bool)

    def _cell(self, t: datetime) -> tuple[int, int]:
        return t.weekday(), (t.hour * 60 + t.minute) // self.slot_minutes

    def observe(self, t: datetime, value: float) -> None:
        """One slot's average (kW) for the slot starting at or containing `t`."""
        d, s = self._cell(t)
        if self.seen[d, s]:
            self.values[d, s] += self.alpha * (value - self.values[d, s])
        else:
            self.values[d, s] = value
            self.seen[d, s] = True

    def predict(self, t: datetime) -> float:
        d, s = self._cell(t)
        if self.seen[d, s]:
            return float(self.values[d, s])
        any_day = self.seen[:, s]
        return float(self.values[any_day, s].mean()) if any_day.any() else 0.0

    def forecast(self, start: datetime, slots: int) -> np.ndarray:
        """`slots` consecutive slot forecasts from `start` (the planner's pv/base series)."""
        step = timedelta(minutes=self.slot_minutes)
        return np.array([self.predict(start + i * step) for i in range(slots)])
