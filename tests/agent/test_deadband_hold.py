"""An increase under `control.deadband_kw` is written once it has been wanted for
`control.deadband_hold_s` (agent/control/residues.py), out of confirmed headroom only.

Cycle by cycle (cycle_helpers: grid 100 kW, margin 2 kW, CP1 2 connectors, CP2 1; the base
load window shortened to 1 s so a fall shows within a few cycles). Three EVs take all they are
given: 20 kW each at a base load of 38 kW. The base load then falls by 1.2 kW: each share
rises by 0.4 kW, under the 0.5 kW deadband. Before the hold, such a residue was never written
while the shares stayed put (S05 at 3.15 kW of its 3.56 for hours on the sub-board day:
docs/testing.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from cycle_helpers import Station, settings

from agent.control.apply import plan_writes
from agent.model.snapshot import Snapshot

KEYS = (("CP1", 1), ("CP1", 2), ("CP2", 1))
HOLD_S = 5.0
ROOM_KW = 100.0 - 2.0  # capacity less margin: what base load and limits share


@dataclass
class AgedStation(Station):
    """The grid meter's reading may be `grid_age_s` old (read in an earlier cycle)."""

    grid_age_s: float = 0.0

    def snapshot(self) -> Snapshot:
        return replace(super().snapshot(), grid_age_s=self.grid_age_s)


def settled(**control) -> AgedStation:
    st = AgedStation(cfg=settings(control={"base_load_window_s": 1.0, "deadband_hold_s": HOLD_S,
                                           **control}), base_kw=38.0)  # fmt: skip
    for key in KEYS:
        st.plug(key)
    for _ in range(40):
        st.cycle(follow=True)
    assert [st.limits[k] for k in KEYS] == pytest.approx([20.0] * 3)
    return st


def share(base_kw: float) -> float:
    return (ROOM_KW - base_kw) / len(KEYS)


def step(st: AgedStation) -> tuple[float, dict, list]:
    """One cycle: (its time, the targets, the increases written)."""
    d = st.cycle(follow=True)
    assert st.base_kw + sum(st.limits[k] for k in KEYS) <= ROOM_KW + 1e-6  # the promise
    return d.snapshot.t, d.targets, [w for w in d.plan.writes if w.reason == "increase"]


def wait_for_residue(st: AgedStation, base_kw: float) -> float:
    """Lower the base load to `base_kw`; the time of the first cycle whose targets are above
    the limits in force (by less than the deadband), no write in it."""
    st.base_kw = base_kw
    for _ in range(20):
        before = dict(st.limits)
        t, targets, ups = step(st)
        if all(targets[k] > before[k] for k in KEYS):
            assert ups == []
            assert all(targets[k] - before[k] < 0.5 for k in KEYS), targets
            return t
    raise AssertionError("the base load's fall never raised the targets")


def test_a_residue_is_written_after_the_hold_and_not_before():
    st = settled()
    t0 = wait_for_residue(st, 36.8)
    moved = False
    while True:
        t, targets, ups = step(st)
        if not moved and t - t0 >= HOLD_S / 2:  # the target moves, still above: no reset
            st.base_kw, moved = 37.1, True
        if t - t0 < HOLD_S:
            assert ups == [], (t - t0, ups)
            continue
        # The first cycle the increase has been wanted for the hold: written to the share.
        assert sorted((w.charger_id, w.idx) for w in ups) == sorted(KEYS)
        assert [st.limits[k] for k in KEYS] == pytest.approx([share(37.1)] * 3, abs=0.011)
        break
    for _ in range(8):  # met: nothing more to write
        _, _, ups = step(st)
        assert ups == []


def test_a_due_residue_waits_for_headroom_the_meter_confirms():
    st = settled()
    t0 = wait_for_residue(st, 36.8)
    st.grid_age_s = 0.5  # read in an earlier cycle: it confirms no headroom (increases wait)
    t = t0
    while t - t0 < HOLD_S + 2.0:
        t, targets, ups = step(st)
        assert ups == []
        assert all(targets[k] > st.limits[k] for k in KEYS)  # still wanted
    st.grid_age_s = 0.0
    _, _, ups = step(st)  # due long ago: written the first cycle the meter confirms it
    assert sorted((w.charger_id, w.idx) for w in ups) == sorted(KEYS)
    assert [st.limits[k] for k in KEYS] == pytest.approx([share(36.8)] * 3, abs=0.011)


def test_the_hold_starts_over_once_the_target_is_met():
    st = settled()
    t0 = wait_for_residue(st, 36.8)
    t = t0
    while t - t0 < HOLD_S - 1.0:
        t, _, ups = step(st)
        assert ups == []
    st.base_kw = 38.0  # back: the targets fall to the limits in force
    _, targets, ups = step(st)
    assert ups == [] and all(targets[k] <= st.limits[k] for k in KEYS), targets
    t1 = wait_for_residue(st, 36.8)  # wanted again: a new wait, not the rest of the old one
    assert t1 - t0 < HOLD_S + 2.0  # (so the old wait would have run out below)
    t = t1
    while True:
        t, _, ups = step(st)
        if t - t1 < HOLD_S:
            assert ups == [], (t - t0, t - t1)
            continue
        assert len(ups) == 3
        break


def test_no_hold_keeps_the_residue_unwritten():
    st = settled(deadband_hold_s=0.0)  # 0: never, as before the hold
    wait_for_residue(st, 36.8)
    for _ in range(4 * 10):
        _, _, ups = step(st)
        assert ups == []


def test_a_due_residue_is_granted_whole_or_not_at_all():
    # Direct on the apply rule: a due connector's 0.4 kW asks the headroom like any
    # increase; shared out it would be a step under the deadband short of the target.
    cur = {KEYS[0]: 20.0, KEYS[1]: 20.0}
    targets = {KEYS[0]: 20.4, KEYS[1]: 20.0}
    kw = dict(capacity_kw=100.0, margin_kw=2.0, deadband_kw=0.5, due=frozenset(KEYS))
    # 98 - 97.7 = 0.3 kW confirmed: not enough for 0.4, nothing written.
    assert plan_writes(targets, cur, dict(cur), {}, {}, import_kw=97.7, **kw).writes == ()
    plan = plan_writes(targets, cur, dict(cur), {}, {}, import_kw=97.6, **kw)
    assert [(w.charger_id, w.idx, w.kw) for w in plan.writes] == [("CP1", 1, 20.4)]
    # Not due: the same 0.4 kW stays unwritten whatever the headroom.
    assert plan_writes(targets, cur, dict(cur), {}, {}, import_kw=50.0,
                       **{**kw, "due": frozenset()}).writes == ()  # fmt: skip


def test_due_residues_short_of_a_shared_room_are_written_one_by_one():
    # Two residues under one metered phase (circuit_meters.py rooms) with 0.5 kW of room:
    # shared out, each step would be under the deadband and neither ever written (S05 and
    # S06 under the sub-board day's L1); whole, in order, the first fits and is written.
    a, b = KEYS[0], KEYS[2]
    cur = {a: 3.15, b: 6.65}
    targets = {a: 3.55, b: 6.95}
    plan = plan_writes(targets, cur, dict(cur), {}, {}, import_kw=50.0, capacity_kw=100.0,
                       margin_kw=2.0, deadband_kw=0.5, due=frozenset((a, b)),
                       circuits=[({a: 1.0, b: 1.0}, 0.5)])  # fmt: skip
    assert [(w.charger_id, w.idx, w.kw) for w in plan.writes] == [("CP1", 1, 3.55)]
    # 0.35 kW: too little for the first's 0.4, enough for the second's 0.3, written whole.
    plan = plan_writes(targets, cur, dict(cur), {}, {}, import_kw=50.0, capacity_kw=100.0,
                       margin_kw=2.0, deadband_kw=0.5, due=frozenset((a, b)),
                       circuits=[({a: 1.0, b: 1.0}, 0.35)])  # fmt: skip
    assert [(w.charger_id, w.idx, w.kw) for w in plan.writes] == [("CP2", 1, 6.95)]
