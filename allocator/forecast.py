"""Forecasts learned from the station's own history: a per-weekday 15-minute profile (PV,
base load) and expected EV arrivals by time of day and day type (`ArrivalForecast`).

Each (weekday, slot-of-day) cell holds an exponentially smoothed value: a new observation
moves it by `alpha` towards itself, so the profile follows seasons without storing history.
Cells never observed fall back to the same slot on any weekday, then to 0. Pure: the
daemon feeds it meter averages and asks for the next horizon's forecast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
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


# -- EV arrivals ------------------------------------------------------------------------

@dataclass(frozen=True)
class SessionRecord:
    """One past charging session, as the forecast learns from it."""

    arrival: datetime
    departure: datetime
    energy_kwh: float  # kWh the EV wanted (or took, when the target is unknown)
    max_power_kw: float  # what it could draw: min(vehicle, charger)


@dataclass(frozen=True)
class ExpectedArrivals:
    """EVs expected to arrive in one slot, one dwell class (short: fast charging; long:
    parked, e.g. an overnight fleet). Means per arrival, and the slot's spread."""

    slot: int  # index from the forecast's start
    long_dwell: bool
    count: float  # expected arrivals in the slot
    energy_kwh: float  # expected energy of all of them
    energy_std_kwh: float  # day-to-day standard deviation of that energy
    dwell_h: float  # mean dwell of one arrival
    max_power_kw: float  # mean power one arrival can draw


# Sessions parked at least this long form the 'long' class: their charge can move in time.
LONG_DWELL_H = 2.0
_CLASSES = (False, True)


class ArrivalForecast:
    """Expected EV arrivals by (day type, slot of day, dwell class), learned from the
    station's own sessions.

    Each observed window (a span of time the station was watched, e.g. a history day)
    adds exposure to the cells it covers; arrivals add count, energy, energy per
    exposure squared (for the day-to-day spread), dwell and power. A cell's rate is its
    arrivals per exposure, smoothed over +-`smooth_slots` neighbouring slots (a week of
    history leaves most single slots empty). Day types: weekday and weekend; a type never
    observed borrows from the other. A new station starts from `prior` (`station_prior`),
    weighted as `prior_days` of exposure, so the first days do not plan for an empty
    station, and history takes over as it accumulates.
    """

    def __init__(self, slot_minutes: int = 15, smooth_slots: int = 4,
                 prior: ArrivalForecast | None = None, prior_days: float = 1.0) -> None:
        if slot_minutes <= 0 or (24 * 60) % slot_minutes:
            raise ValueError("slot_minutes: must divide a day")
        self.slot_minutes = slot_minutes
        self.per_day = 24 * 60 // slot_minutes
        self.smooth_slots = smooth_slots
        shape = (2, self.per_day, 2)  # (weekend, slot of day, long dwell)
        self.exposure = np.zeros(shape[:2])
        self.count = np.zeros(shape)
        self.energy = np.zeros(shape)
        self.energy_sq = np.zeros(shape)  # sum over exposures of (energy in the cell)^2
        self.dwell = np.zeros(shape)
        self.power = np.zeros(shape)
        if prior is not None and prior_days > 0:
            w = prior_days / max(prior.days_observed(), 1e-9)
            for name in ("exposure", "count", "energy", "energy_sq", "dwell", "power"):
                setattr(self, name, getattr(prior, name) * w)

    def days_observed(self) -> float:
        return float(self.exposure.sum()) / self.per_day

    def _cell(self, t: datetime) -> tuple[int, int]:
        return int(t.weekday() >= 5), (t.hour * 60 + t.minute) // self.slot_minutes

    def observe(self, start: datetime, hours: float, sessions: Sequence[SessionRecord]) -> None:
        """A window of `hours` from `start` during which these sessions arrived (all of its
        arrivals; an empty list is a quiet window, which teaches as much)."""
        step = timedelta(minutes=self.slot_minutes)
        n = int(round(hours * 60 / self.slot_minutes))
        cells = [self._cell(start + i * step) for i in range(n)]
        in_cell: dict[tuple[int, int, int], float] = {}
        for s in sessions:
            k = int((s.arrival - start) / step)
            if not 0 <= k < n:
                continue
            dwell = max(0.0, (s.departure - s.arrival).total_seconds() / 3600.0)
            d, slot = cells[k]
            c = int(dwell >= LONG_DWELL_H)
            self.count[d, slot, c] += 1
            self.energy[d, slot, c] += s.energy_kwh
            self.dwell[d, slot, c] += dwell
            self.power[d, slot, c] += s.max_power_kw
            in_cell[(d, slot, c)] = in_cell.get((d, slot, c), 0.0) + s.energy_kwh
        for d, slot in cells:
            self.exposure[d, slot] += 1
        for cell, e in in_cell.items():
            self.energy_sq[cell] += e * e

    def _smooth(self, a: np.ndarray) -> np.ndarray:
        """Triangular kernel over neighbouring slots, wrapping around midnight."""
        k = self.smooth_slots
        if k <= 0:
            return a
        w = np.array([k + 1 - abs(j) for j in range(-k, k + 1)], dtype=float)
        out = np.zeros_like(a)
        for j, wj in zip(range(-k, k + 1), w, strict=True):
            out += wj * np.roll(a, j, axis=1)
        return out / w.sum()

    def expected(self, start: datetime, slots: int, min_energy_kwh: float = 0.5) -> list[ExpectedArrivals]:
        """Arrivals expected in each of `slots` slots from `start` (cells with less than
        `min_energy_kwh` expected are left out: they would only add columns to the LP)."""
        arrays = {name: getattr(self, name).copy() for name in
                  ("exposure", "count", "energy", "energy_sq", "dwell", "power")}
        for d in (0, 1):  # a day type never seen borrows from the other
            if arrays["exposure"][d].sum() <= 0:
                for a in arrays.values():
                    a[d] = a[1 - d]
        exposure = np.maximum(self._smooth(arrays["exposure"][:, :, None]), 1e-9)
        count, energy = self._smooth(arrays["count"]), self._smooth(arrays["energy"])
        energy_sq = self._smooth(arrays["energy_sq"])
        dwell, power = self._smooth(arrays["dwell"]), self._smooth(arrays["power"])
        out = []
        step = timedelta(minutes=self.slot_minutes)
        for i in range(slots):
            d, s = self._cell(start + i * step)
            for c in _CLASSES:
                n = count[d, s, int(c)] / exposure[d, s, 0]
                e = energy[d, s, int(c)] / exposure[d, s, 0]
                if e < min_energy_kwh or count[d, s, int(c)] <= 0:
                    continue
                var = max(0.0, energy_sq[d, s, int(c)] / exposure[d, s, 0] - e * e)
                per = count[d, s, int(c)]
                out.append(ExpectedArrivals(
                    slot=i, long_dwell=c, count=float(n), energy_kwh=float(e),
                    energy_std_kwh=float(math.sqrt(var)),
                    dwell_h=float(dwell[d, s, int(c)] / per),
                    max_power_kw=float(power[d, s, int(c)] / per)))
        return out


def station_prior(fast_connectors: int, slow_connectors: int, fast_kw: float = 150.0,
                  slow_kw: float = 22.0, slot_minutes: int = 15) -> ArrivalForecast:
    """What a new station expects before it has history: on each fast connector one
    35 kWh arrival every 4 hours in the day (06:00-22:00 local UTC), 40 minutes each;
    a third of the slow connectors taken in the evening (17:00-20:00) for 10 hours at
    30 kWh. A deliberately plain prior, weighted as one day: a week of the station's own
    sessions outweighs it."""
    f = ArrivalForecast(slot_minutes=slot_minutes, smooth_slots=0)
    per_day = f.per_day
    hours = np.arange(per_day) * slot_minutes / 60.0
    day = (hours >= 6) & (hours < 22)
    evening = (hours >= 17) & (hours < 20)
    f.exposure[:] = 1.0
    fast_rate = fast_connectors * slot_minutes / 60.0 / 4.0
    slow_rate = slow_connectors / 3.0 / max(1, int(evening.sum()))
    for d in (0, 1):
        for s in range(per_day):
            for c, rate, e, dw, p, on in ((0, fast_rate, 35.0, 0.67, fast_kw, day[s]),
                                           (1, slow_rate, 30.0, 10.0, slow_kw, evening[s])):
                if on:
                    f.count[d, s, c] = rate
                    f.energy[d, s, c] = rate * e
                    f.energy_sq[d, s, c] = rate * e * e  # Poisson-like spread
                    f.dwell[d, s, c] = rate * dw
                    f.power[d, s, c] = rate * p
    f.smooth_slots = 4
    return f
