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

A draw that is a sample (OCPP meter values: `sample_ts` set, taken up to a sample interval
before the read) shows a decrease only later: the draw read now may predate it, so it
ends the wait only once it is a sample taken after the decrease was acknowledged. The
driver's clock need not be the controller's, so sample times are only compared for
equality: the sample in hand at the first cycle after the acknowledgement (that cycle's
read comes after it) may still be older; a sample differing from it is newer. Over OCPP a
32 A sub-board reached 37.8 A without this (docs/ocpp.md). A silent charger ends the wait
after `follow_s` plus `sample_s` (the meter value interval the agent asks for): its decrease
then had the time a charger takes to follow and one sample interval to show.

A sample taken before a decrease also says nothing of the draw after it, even once the limit
is raised again: the EV stopped unseen, and its old sample would hide the power its new limit
lets it ramp up to (the pause rotation raises an EV again a few seconds after pausing it).
So `draw_bounds` counts such a draw at most at the lowest limit since the decrease, until a
sample taken after it arrives.

The other way round, a sample taken before an *increase* says too little: the EV ramps up to
its new limit unseen while every circuit meter above it already shows the draw. Subtracted
from the meter, that stale sample made the circuit's base load read the EV's own draw (over
OCPP a 1-phase EV raised from 0 to 6 A put 6 A into its sub-board's base for up to a sample
interval, the allocator paused another EV for it, and so on every second; a 3-phase EV back
on three phases was paused and switched down again). So `base_draws` counts such a draw, in
the circuits' base load only, at the limit now in force until a sample shows it: one taken
after the increase showing the draw at the limit, or any sample taken `follow_s` after the
increase (the EV had the time to follow: what it reads is what the EV takes). Not a fixed
time: a charger may send its samples far less often than the agent asks (10 s where 1 s was
asked), and a sample taken while the EV was paused still read 0 after its ramp; let go
after `follow_s` plus the 1 s asked, the base counted the EV's draw as other load, the room
fell below two minimums and two squeezed EVs were paused and restarted every 5-20 s
(docs/ocpp.md). Nor a bound on the connector's interval as seen: at a session's start its
first samples come about 1 s apart (the transaction's own messages), and a bound of
`follow_s` plus twice that let both squeezed EVs go 3.7 s after their raise, before their
next 10 s sample, and the allocator paused both for 2.5 s. So a charger that sends no sample keeps its EV
counted at its limit. That errs towards a lower base while the EV ramps or takes less than
its limit (by its undrawn part): the increases it lets the allocator grant are still checked
against each circuit's measured room, which counts the raised EV's undrawn limit from its old
sample (agent/control/circuit_meters.py), so no phase gets more than its room; an EV that
then ramps up to its limit is a base-load step of that much, followed by the next cycle's
decreases as any other. Decreases keep their `follow_s` plus `sample_s`: sized on the
observed interval too, their old limits held the room longer and the squeeze's restarts came
later, not fewer (docs/ocpp.md).
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, replace

from agent.control.apply import Key

FOLLOW_EPS_KW = 0.1  # metering noise: a draw this close to the new limit has followed it


@dataclass(frozen=True, slots=True)
class _Lowered:
    old_kw: float  # the highest limit that may still be in force
    new_kw: float
    since: float  # when it was lowered (monotonic seconds)
    was_above: bool  # the connector drew above the new limit when it was lowered
    sampled: bool = False  # its draw is a sample (OCPP meter values)
    # sampled: the sample in hand at the first check after the decrease (may predate it)
    before: float | None = None
    checked: bool = False  # `before` was taken


@dataclass(frozen=True, slots=True)
class _Unseen:
    low_kw: float  # the lowest limit acknowledged since the last sample known to follow it
    since: float
    before: float | None = None  # as `_Lowered.before`
    checked: bool = False


def _fresh(rec: _Lowered | _Unseen | _Raised, ts: float | None, t: float) -> tuple[bool, bool]:
    """(a sample taken after the decrease is in hand, take `ts` as the baseline now)."""
    if not rec.checked:
        return False, t > rec.since
    return ts is not None and ts != rec.before, False


@dataclass(frozen=True, slots=True)
class _Raised:
    new_kw: float  # the limit it was raised to
    since: float  # when the increase was acknowledged
    before: float | None = None  # as `_Lowered.before`
    checked: bool = False
    # as `before`, at the first check `follow_s` after the increase: a sample differing from
    # it was taken once the EV could have followed
    followed_before: float | None = None
    followed_checked: bool = False


class LimitLag:
    """Connectors lowered less than `follow_s` ago, and what they may still draw."""

    def __init__(self, follow_s: float, sample_s: float = 0.0) -> None:
        self.follow_s = follow_s
        self.sample_s = sample_s  # a sampled draw's interval: how much later it shows
        self._lowered: dict[Key, _Lowered] = {}
        self._unseen: dict[Key, _Unseen] = {}
        self._raised: dict[Key, _Raised] = {}

    def _wait_s(self, low: _Lowered) -> float:
        return self.follow_s + (self.sample_s if low.sampled else 0.0)

    def lowered(self, key: Key, old_kw: float, new_kw: float, drawing_kw: float, t: float,
                sampled: bool = False) -> None:
        """A decrease from `old_kw` to `new_kw` was acknowledged at `t`. A second decrease
        while the first is still followed keeps the higher old limit. `sampled`: the
        connector's draw is a sample (its `power_ts` is set)."""
        if self.follow_s <= 0 or new_kw >= old_kw:
            return
        prev = self._lowered.get(key)
        if prev is not None and t - prev.since < self._wait_s(prev):
            old_kw = max(old_kw, prev.old_kw)
        self._lowered[key] = _Lowered(old_kw, new_kw, t, drawing_kw > new_kw + FOLLOW_EPS_KW,
                                      sampled)
        if sampled:
            seen = self._unseen.get(key)
            self._unseen[key] = _Unseen(min(new_kw, seen.low_kw) if seen else new_kw, t)

    def raised(self, key: Key, new_kw: float, t: float | None = None,
               sampled: bool = False) -> None:
        """An increase acknowledged at `t`: at or above the old limit, nothing is left to
        follow. `sampled`: the connector's draw is a sample, which shows it only later."""
        prev = self._lowered.get(key)
        if prev is not None and new_kw >= prev.old_kw:
            del self._lowered[key]
        if sampled and t is not None:
            self._raised[key] = _Raised(new_kw, t)

    def forget(self, keys: Iterable[Key]) -> None:
        """Connectors whose limit became unknown (a failed write): nothing to remember."""
        for key in keys:
            self._lowered.pop(key, None)
            self._unseen.pop(key, None)
            self._raised.pop(key, None)

    def base_draws(self, sample_ts: Mapping[Key, float | None], drawing: Mapping[Key, float],
                   t: float) -> frozenset[Key]:  # fmt: skip
        """Sampled connectors raised and not seen following yet: the circuits' base load
        counts their draw at the limit in force (see the module's docstring). Forgotten once
        a sample taken after the increase shows the draw at the new limit, or once any sample
        taken `follow_s` after it is in hand (an EV that takes less than its limit): one
        taken before the charger and the EV followed (their delay and ramp) still hides the
        ramp. No time limit: a charger sending no sample keeps its EV counted at its limit."""
        out: set[Key] = set()
        for key, rec in list(self._raised.items()):
            ts = sample_ts.get(key)
            fresh, baseline = _fresh(rec, ts, t)
            followed = fresh and drawing.get(key, 0.0) >= rec.new_kw - FOLLOW_EPS_KW
            after = False  # a sample taken `follow_s` after the increase is in hand
            if rec.followed_checked:
                after = ts is not None and ts != rec.followed_before
            elif t > rec.since + self.follow_s:
                rec = replace(rec, followed_before=ts, followed_checked=True)
            if followed or after:
                del self._raised[key]
                continue
            if baseline:
                rec = replace(rec, before=ts, checked=True)
            self._raised[key] = rec
            out.add(key)
        return frozenset(out)

    def overdue(self) -> frozenset[Key]:
        """Connectors `base_draws` still counts at their limit `follow_s` after the increase
        (as of its last call): the EV had the time to follow, and only a sample ends it.
        Until one comes, the grid's and the circuits' base loads count the EV at its limit:
        a rise of the base load in those seconds, while the EV takes less, goes unseen. The
        loop asks these for a sample where their chargers can (TriggerMessage), so that lasts
        a round trip, not up to a meter interval."""
        return frozenset(k for k, rec in self._raised.items() if rec.followed_checked)

    def draw_bounds(self, sample_ts: Mapping[Key, float | None], t: float) -> dict[Key, float]:
        """Per sampled connector lowered since its last sample: the most its sampled draw may
        count as (the lowest limit since), as far as power its limit allows above the draw
        goes. Forgotten once a sample taken after the decrease is in hand; a silent charger
        keeps it (its draw counts low: the headroom counts more of its limit as undrawn)."""
        out: dict[Key, float] = {}
        for key, rec in list(self._unseen.items()):
            ts = sample_ts.get(key)
            fresh, baseline = _fresh(rec, ts, t)
            if fresh:
                del self._unseen[key]
                continue
            if baseline:
                self._unseen[key] = replace(rec, before=ts, checked=True)
            out[key] = rec.low_kw
        return out

    def still_allowed(
        self, drawing: Mapping[Key, float], t: float, vacant: Container[Key] = (),
        sample_ts: Mapping[Key, float | None] | None = None,
    ) -> dict[Key, float]:
        """Per connector still following a decrease at `t`: the old limit, which the headroom
        must count instead of the new one. Connectors that followed are forgotten. A connector
        `vacant` now (no EV plugged in) draws nothing, but an EV plugged in before its charger
        applied the decrease draws under the old limit: it counts at the old limit for
        `follow_s` (no sample has to show a draw it does not have), then not, but is
        remembered in case an EV plugs in before the whole wait is up. (Freed at once, its
        power went to another connector, whose decrease then came too late: 60.6 kW on 60 in
        the OCPP storm test.) `sample_ts`: per sampled connector, its draw's sample time
        (`power_ts`), compared for equality only."""
        stamps = sample_ts or {}
        out: dict[Key, float] = {}
        for key, low in list(self._lowered.items()):
            draw = drawing.get(key)
            fresh = True
            if low.sampled:
                ts = stamps.get(key)
                fresh, baseline = _fresh(low, ts, t)
                if baseline:
                    low = self._lowered[key] = replace(low, before=ts, checked=True)
            # An EV that left draws nothing: that proves nothing of the limit in force.
            followed = (fresh and low.was_above and draw is not None and key not in vacant
                        and draw <= low.new_kw + FOLLOW_EPS_KW)
            if t - low.since >= self._wait_s(low) or followed:
                del self._lowered[key]
            elif key not in vacant or t - low.since < self.follow_s:
                out[key] = low.old_kw
        return out
