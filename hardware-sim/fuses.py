"""A circuit breaker's time-current curve, simple and on the pessimistic side.

Based on the conventional currents of IEC 60898-1 (miniature circuit breakers, In <= 63 A):
- 1.13 In, the conventional non-tripping current: no trip within 1 h. Here: never.
- 1.45 In, the conventional tripping current: trips within 1 h. Here: within 60 s (earlier
  than the standard allows, so the simulator reports a trip a real breaker might still hold).
- 2.55 In: trips between 1 s and 60 s (In <= 32 A). Here: 1 s, the fast end.
- 5 In: the instantaneous (magnetic) release of a type B curve (3-5 In) trips within 0.1 s.
  Here: 0.1 s (type C, 5-10 In, would hold longer: B is the pessimistic choice).
Between these points the trip time is interpolated on log-log axes (the thermal part of a
real curve is close to a straight line there). A breaker integrates `dt / trip_time` while
over 1.13 In and trips at 1; below its rating it cools (the sum falls back at 1/60 per s).
"""

from __future__ import annotations

import math

NEVER = 1.13
CURVE = ((1.13, 3600.0), (1.45, 60.0), (2.55, 1.0), (5.0, 0.1))
COOL_PER_S = 1.0 / 60.0


def trip_time_s(ratio: float) -> float:
    """Seconds to trip at a steady current of `ratio` x the rating (inf: never)."""
    if ratio <= NEVER:
        return math.inf
    if ratio >= CURVE[-1][0]:
        return CURVE[-1][1]
    for (r0, t0), (r1, t1) in zip(CURVE, CURVE[1:], strict=False):
        if r0 <= ratio <= r1:
            f = (math.log(ratio) - math.log(r0)) / (math.log(r1) - math.log(r0))
            return math.exp(math.log(t0) + f * (math.log(t1) - math.log(t0)))
    return math.inf  # not reached


class Breaker:
    """One circuit's breaker: the thermal sum of its most loaded phase, and the trip."""

    def __init__(self, rating_a: float) -> None:
        self.rating_a = rating_a
        self.heat = 0.0  # 1.0 = trip
        self.tripped_at: float | None = None
        self.peak_a = [0.0, 0.0, 0.0]
        self.over_s = 0.0  # time spent with a phase above the rating

    def step(self, now: float, currents_a: tuple[float, float, float], dt: float) -> bool:
        """Advance by dt with these phase currents; True when it trips now."""
        for p in range(3):
            self.peak_a[p] = max(self.peak_a[p], currents_a[p])
        worst = max(currents_a) / self.rating_a
        if worst > 1.0:
            self.over_s += dt
        if self.tripped_at is not None:
            return False
        t = trip_time_s(worst)
        if math.isinf(t):
            if worst <= 1.0:
                self.heat = max(0.0, self.heat - COOL_PER_S * dt)
            return False
        self.heat += dt / t
        if self.heat >= 1.0:
            self.tripped_at = now
            return True
        return False
