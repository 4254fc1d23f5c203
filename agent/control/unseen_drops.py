"""Draw an EV stopped unseen behind its charger's sample: kept out of the headroom.

A charger whose draw is a sample (OCPP meter values, `power_ts` set) shows an EV's own pause
(cell balancing, preconditioning; its limit untouched) only with its next sample, up to a
meter interval later (10 s and more on real chargers). The meters show it at once: the base
load read as meter - samples falls by the EV's draw, the headroom for increases
(capacity - import - what limits allow above the sampled draws) grows by as much, and that
room went to another EV. When the paused EV resumed under its unchanged limit, a 32 A
sub-board reached 37.3 A for 3 s over OCPP (tests/ocpp/test_ocpp_ev_pause.py) and a 17 kW
grid 17.9 kW.

So, per meter scope (the grid's kW, each metered circuit's phases and power, each in kW)
and per sampled connector below it, the level (meter - counted draws, PV and battery
added back) is followed from the cycle that connector's sample changed: the most it has
been since, less what it is now, is a fall its sample may hide, as far as it counts as
drawing (its sample, bounded by its limit). The headroom for increases is held back by
the largest such fall, at most what they can hide together. A sample taken since
ends it for that connector: a paused EV's sample then reads ~0 and its whole limit counts
as undrawn in the headroom, as for any EV below its limit. The reference restarts from
the highest level of the last `lookback_s`, since a new sample may have been taken a
cycle or two before it was read.

The largest fall, not the sum of each connector's: two pauses show as one fall of both
(the oldest reference sees it whole), while a sum would count the same fall of the base
load once per connector (ten chargers on a station with 1 kW of base-load noise would hold
10 kW). What it misses: a rise of the base load itself in the same seconds masks as much
of a pause; that rise is load the meter has measured, and the import it adds is
corrected as any base-load step is (the next cycle's decreases, within the margin).

Only increases wait (apply.py takes it as import): the allocator's shares are untouched,
so no limit falls for it. It errs on the safe side: a fall of the base load itself, or the
level's rise while a lowered EV's sample still shows its old draw (its draw is counted at
the new limit from the acknowledgement: limit_lag.py `draw_bounds`) and its fall once the
EV has followed, are held too, until each exposed connector's next sample (1 s at the
default meter interval). While increases wait on it, the loop asks the connectors `behind`
it for a sample at once where their chargers can (OCPP TriggerMessage: agent/ocpp/charger.py
`request_sample`). Pure: time and levels come from the caller.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Container, Mapping
from dataclasses import dataclass, field

Key = tuple[str, int]
Scope = str | tuple[str, int]  # GRID or (circuit id, room index)
GRID = "grid"


@dataclass(slots=True)
class _Ref:
    ts: float | None  # the sample the reference was taken with (compared for equality)
    high: dict[Scope, float] = field(default_factory=dict)  # the level's max since


Exposed = Mapping[Scope, tuple[float, float]]  # scope -> (most it can hide, what the level subtracts for it)


class UnseenDrops:
    """Per sampled connector, the fall of each scope's level since its sample changed."""

    def __init__(self, lookback_s: float) -> None:
        self.lookback_s = lookback_s
        self._refs: dict[Key, _Ref] = {}
        # Connectors whose stale sample may hide a fall held this cycle: whose next sample
        # would end it (the control loop asks their chargers for one where it can).
        self.behind: frozenset[Key] = frozenset()
        self._recent: deque[tuple[float, Mapping[Scope, float], Mapping[Key, tuple[float | None, Exposed]]]] = deque()

    def update(self, t: float, levels: Mapping[Scope, float],
               exposure: Mapping[Key, tuple[float | None, Exposed]]) -> dict[Scope, float]:
        """`levels`: this cycle's level per scope whose meter is fresh (kW); `exposure`:
        per sampled connector, (its sample's time, {scope: (the most a pause of its EV can
        hide there, what the level subtracts for its draw), kW}). Returns kW per scope the
        headroom for increases holds back."""
        while self._recent and self._recent[0][0] < t - self.lookback_s:
            self._recent.popleft()
        behind: set[Key] = set()
        fall: dict[Scope, float] = {}  # the largest fall since any exposed connector's sample
        most: dict[Scope, float] = {}  # what they can hide together: each its own fall at most
        for key, (ts, exposed) in exposure.items():
            ref = self._refs.get(key)
            if ref is None or ref.ts != ts:  # a new sample: the EV's draw is seen again
                ref = self._refs[key] = _Ref(ts, self._reference(key, levels, exposed))
            for scope, (hides, _) in exposed.items():
                level = levels.get(scope)
                if level is None:  # its meter is stale: no increase there anyway
                    continue
                high = ref.high[scope] = max(ref.high.get(scope, level), level)
                if hides > 0.0 and high > level:
                    fall[scope] = max(fall.get(scope, 0.0), high - level)
                    most[scope] = most.get(scope, 0.0) + min(hides, high - level)
                    behind.add(key)
        for key in self._refs.keys() - exposure.keys():
            del self._refs[key]
        self._recent.append((t, dict(levels), exposure))
        self.behind = frozenset(behind)
        return {scope: min(f, most[scope]) for scope, f in fall.items() if f > 0.0}

    def _reference(self, key: Key, levels: Mapping[Scope, float],
                   exposed: Exposed) -> dict[Scope, float]:  # fmt: skip
        """The highest level of the last `lookback_s`, each past level taken with this
        connector's new sample in place of the one it had then: a level its own stale
        sample raised (its EV ramping up unseen) is no reference, one the others' raised
        still is (an error on the safe side)."""
        out = dict(levels)
        for _, past, was in self._recent:
            then: Exposed = was[key][1] if key in was else {}
            for scope, (_, now_drawn) in exposed.items():
                level = past.get(scope)
                if level is None or scope not in out:
                    continue
                drawn_then = then[scope][1] if scope in then else now_drawn
                out[scope] = max(out[scope], level + drawn_then - now_drawn)
        return out


def scopes(
    grid_level_kw: float | None,
    rooms: Mapping[Scope, tuple[Mapping[Key, float], float, Mapping[Key, float]]],
    counted: Mapping[Key, float],
    allowed: Mapping[Key, float],
    sample_ts: Mapping[Key, float | None],
    vacant: Container[Key],
) -> tuple[dict[Scope, float], dict[Key, tuple[float | None, dict[Scope, tuple[float, float]]]]]:
    """This cycle's levels and exposures for `UnseenDrops.update`. `grid_level_kw`: import
    less the counted draws, PV and battery discharge added back (None: meter not fresh);
    `rooms`: per circuit scope, (the apply rule's connector weights, its level in kW: NaN
    when unknown, what the level subtracts per connector in kW); `counted`: each
    connector's draw as the headroom counts it (its sample, bounded after a decrease);
    `allowed`: the most its limit lets it draw. Only sampled, occupied connectors can hide
    a pause: the rest are left out (a vacant one with nothing to hide)."""
    levels: dict[Scope, float] = {}
    if grid_level_kw is not None:
        levels[GRID] = grid_level_kw
    for scope, (_, level, _) in rooms.items():
        if not math.isnan(level):
            levels[scope] = level
    exposure: dict[Key, tuple[float | None, dict[Scope, tuple[float, float]]]] = {}
    for key, ts in sample_ts.items():
        if ts is None:
            continue
        draw = counted.get(key, 0.0)
        # vacant: nothing to resume, but what the level subtracts for it is kept
        most = 0.0 if key in vacant else max(0.0, min(draw, allowed.get(key, 0.0)))
        exposed: dict[Scope, tuple[float, float]] = {}
        if grid_level_kw is not None:
            exposed[GRID] = (most, draw)
        for scope, (weights, _, drawn) in rooms.items():
            w = weights.get(key)
            if w:
                exposed[scope] = (w * most, drawn.get(key, 0.0))
        exposure[key] = (ts, exposed)
    return levels, exposure
