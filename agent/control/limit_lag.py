"""A lowered limit is not believed before the charger follows it.

A charger (and the EV behind it) takes time to come down after its limit is lowered: real
chargers 1-5 s, the simulator a ramp. Until then the connector may still draw up to its old
limit. If the headroom for increases counted it at the new limit at once, the power it frees
would be handed to another charger before it is free (seen: 61.6 kW on a 60 kW grid).

So, per connector, the old (higher) limit and the time of the decrease are remembered; for
`follow_s` after it, the headroom counts the connector at max(old limit, measured draw), and
only then at its new limit. The draw coming down to the new limit ends the wait sooner, but
only if the connector drew above the new limit when it was lowered: a draw already below
it proves nothing (the EV could still ramp up to the old limit until the charger applies
the new one). Pure: the caller passes the time (the snapshot's) and the measurements.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass

from agent.control.apply import Key

FOLLOW_EPS_KW = 0.1  # metering noise: a draw this close to the new limit has followed it


@dataclass(frozen=True, slots=True)
class _Lowered:
    old_kw: float  # the highest limit that may still be in force
    new_kw: float
    since: float  # when it was lowered (monotonic seconds)
    was_above: bool  # the connector drew above the new limit when it was lowered


class LimitLag:
    """Connectors lowered less than `follow_s` ago, and what they may still draw."""

    def __init__(self, follow_s: float) -> None:
        self.follow_s = follow_s
        self._lowered: dict[Key, _Lowered] = {}

    def lowered(self, key: Key, old_kw: float, new_kw: float, drawing_kw: float, t: float) -> None:
        """A decrease from `old_kw` to `new_kw` was acknowledged at `t`. A second decrease
        while the first is still followed keeps the higher old limit."""
        if self.follow_s <= 0 or new_kw >= old_kw:
            return
        prev = self._lowered.get(key)
        if prev is not None and t - prev.since < self.follow_s:
            old_kw = max(old_kw, prev.old_kw)
        self._lowered[key] = _Lowered(old_kw, new_kw, t, drawing_kw > new_kw + FOLLOW_EPS_KW)

    def raised(self, key: Key, new_kw: float) -> None:
        """An increase at or above the old limit: nothing is left to follow."""
        prev = self._lowered.get(key)
        if prev is not None and new_kw >= prev.old_kw:
            del self._lowered[key]

    def forget(self, keys: Iterable[Key]) -> None:
        """Connectors whose limit became unknown (a failed write): nothing to remember."""
        for key in keys:
            self._lowered.pop(key, None)

    def still_allowed(
        self, drawing: Mapping[Key, float], t: float, vacant: Container[Key] = ()
    ) -> dict[Key, float]:
        """Per connector still following a decrease at `t`: the old limit, which the headroom
        must count instead of the new one. Connectors that followed are forgotten. A connector
        `vacant` now (no EV plugged in) draws nothing whatever its limit: not counted, but
        remembered, in case an EV plugs in before the time is up."""
        out: dict[Key, float] = {}
        for key, low in list(self._lowered.items()):
            draw = drawing.get(key)
            followed = low.was_above and draw is not None and draw <= low.new_kw + FOLLOW_EPS_KW
            if t - low.since >= self.follow_s or followed:
                del self._lowered[key]
            elif key not in vacant:
                out[key] = low.old_kw
        return out
