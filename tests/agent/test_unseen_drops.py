"""agent/control/unseen_drops.py, stepped cycle by cycle (0.25 s): what a fall of a meter's
level behind a stale sample holds back, and when it lets go."""

from __future__ import annotations

import pytest

from agent.control.unseen_drops import GRID, UnseenDrops, scopes

CP1, CP2 = ("CP1", 1), ("CP2", 1)


def _step(u: UnseenDrops, t: float, level: float, samples: dict) -> float:
    """One cycle at the grid only: `samples`: key -> (sample time, counted kW)."""
    levels, exposure = scopes(level, {}, {k: kw for k, (_, kw) in samples.items()},
                              dict.fromkeys(samples, 11.0),
                              {k: ts for k, (ts, _) in samples.items()}, ())
    return u.update(t, levels, exposure).get(GRID, 0.0)


def test_a_pause_hidden_by_a_stale_sample_is_held_until_the_next_sample_shows_it():
    u = UnseenDrops(lookback_s=1.0)
    # base 5 kW, two EVs at 6 kW, sampled every second
    assert _step(u, 0.0, 5.0, {CP1: (0.0, 6.0), CP2: (0.0, 6.0)}) == 0.0
    assert _step(u, 0.25, 5.0, {CP1: (0.0, 6.0), CP2: (0.0, 6.0)}) == 0.0
    # CP1's EV pauses: import falls by 6, its sample still says 6 -> the level reads -1:
    # either EV could be the one (6 held once, not once per connector)
    assert _step(u, 0.5, -1.0, {CP1: (0.0, 6.0), CP2: (0.0, 6.0)}) == pytest.approx(6.0)
    # CP2's new sample, still 6: CP1's stale one still hides the fall
    assert _step(u, 0.75, -1.0, {CP1: (0.0, 6.0), CP2: (0.75, 6.0)}) == pytest.approx(6.0)
    # CP1's sample shows the pause: the level is right again (5), nothing is held
    assert _step(u, 1.0, 5.0, {CP1: (1.0, 0.0), CP2: (0.75, 6.0)}) == 0.0
    assert _step(u, 1.25, 5.0, {CP1: (1.0, 0.0), CP2: (0.75, 6.0)}) == 0.0


def test_two_pauses_are_held_whole_and_the_fall_at_most_what_the_exposed_draw():
    u = UnseenDrops(lookback_s=1.0)
    _step(u, 0.0, 5.0, {CP1: (0.0, 6.0), CP2: (0.0, 4.0)})
    assert _step(u, 0.25, -1.0, {CP1: (0.0, 6.0), CP2: (0.0, 4.0)}) == pytest.approx(6.0)
    assert _step(u, 0.5, -5.0, {CP1: (0.0, 6.0), CP2: (0.0, 4.0)}) == pytest.approx(10.0)
    # and a fall of 20 (base load too) is held at the 10 both count as drawing
    assert _step(u, 0.75, -15.0, {CP1: (0.0, 6.0), CP2: (0.0, 4.0)}) == pytest.approx(10.0)


def test_each_connector_hides_at_most_what_it_counts_as_drawing():
    u = UnseenDrops(lookback_s=1.0)
    _step(u, 0.0, 5.0, {CP1: (0.0, 2.0), CP2: (0.0, 0.0)})
    # a 4 kW fall of the base load itself: CP1 can hide 2 of it, CP2 (drawing 0) none
    assert _step(u, 0.25, 1.0, {CP1: (0.0, 2.0), CP2: (0.0, 0.0)}) == pytest.approx(2.0)


def test_a_rise_of_the_level_is_not_held_and_a_later_fall_back_to_it_is_not_a_drop():
    u = UnseenDrops(lookback_s=0.5)
    _step(u, 0.0, 5.0, {CP1: (0.0, 6.0)})
    # CP2 (live, not sampled) ramps up unseen by nobody: the level is meter - draws, flat;
    # a real base rise of 3 kW, then back
    assert _step(u, 0.25, 8.0, {CP1: (0.0, 6.0)}) == 0.0
    # the fall from 8 back to 5 is held (it could be CP1 pausing for 3 kW of its 6)
    assert _step(u, 0.5, 5.0, {CP1: (0.0, 6.0)}) == pytest.approx(3.0)
    # CP1's next sample, still 6: what it showed since was flat, its reference restarts
    # from the highest of the last 0.5 s (5 at 0.5 s; 8 at 0.25 s has passed)
    assert _step(u, 1.0, 5.0, {CP1: (1.0, 6.0)}) == 0.0


def test_the_reference_covers_a_sample_taken_before_the_read_that_first_shows_it():
    u = UnseenDrops(lookback_s=1.0)
    _step(u, 0.0, 5.0, {CP1: (0.0, 6.0)})
    # the EV paused at 0.2 s; a sample taken at 0.1 s (still 6) is first read at 0.25 s
    # with the meter already down: the fall is held, not taken as the new reference
    assert _step(u, 0.25, -1.0, {CP1: (0.1, 6.0)}) == pytest.approx(6.0)


def test_a_level_raised_by_the_connectors_own_stale_sample_is_no_reference():
    # the relay test's trace: an EV ramps from 5 to 30 kW unseen behind a 60 s sample, the
    # level reads base + 25; its next sample (30) brings the level back to the base: that
    # is no fall, and nothing may be held for it
    u = UnseenDrops(lookback_s=1.0)
    assert _step(u, 0.0, 0.0, {CP1: (0.0, 5.0)}) == 0.0
    assert _step(u, 0.25, 25.0, {CP1: (0.0, 5.0)}) == 0.0
    assert _step(u, 0.5, 25.0, {CP1: (0.0, 5.0)}) == 0.0
    assert _step(u, 0.75, 0.0, {CP1: (60.0, 30.0)}) == 0.0
    # but a second EV's stale sample then holds the fall (it could be its pause)
    u = UnseenDrops(lookback_s=1.0)
    _step(u, 0.0, 0.0, {CP1: (0.0, 5.0), CP2: (0.0, 10.0)})
    _step(u, 0.25, 25.0, {CP1: (0.0, 5.0), CP2: (0.0, 10.0)})
    assert _step(u, 0.5, 0.0, {CP1: (0.5, 30.0), CP2: (0.0, 10.0)}) == pytest.approx(10.0)


def test_a_stale_meter_holds_nothing_there_and_a_vacant_connector_hides_nothing():
    u = UnseenDrops(lookback_s=1.0)
    drawn = {CP1: 6.0, CP2: 6.0}
    levels, exposure = scopes(None, {("sub", 0): ({CP1: 1.0, CP2: 1.0}, 2.0, drawn)}, drawn,
                              {CP1: 7.4, CP2: 7.4}, {CP1: 0.0, CP2: 0.0}, {CP2})
    assert GRID not in levels
    assert exposure == {CP1: (0.0, {("sub", 0): (6.0, 6.0)}),
                        CP2: (0.0, {("sub", 0): (0.0, 6.0)})}  # vacant: hides nothing
    u.update(0.0, levels, exposure)
    levels, exposure = scopes(None, {("sub", 0): ({CP1: 1.0, CP2: 1.0}, 0.5, drawn)}, drawn,
                              {CP1: 7.4, CP2: 7.4}, {CP1: 0.0, CP2: 0.0}, {CP2})
    assert u.update(0.25, levels, exposure) == {("sub", 0): pytest.approx(1.5)}


def test_a_pause_after_another_connectors_new_sample_is_held_on_top_of_the_first():
    u = UnseenDrops(lookback_s=0.3)
    _step(u, 0.0, 5.0, {CP1: (0.0, 6.0), CP2: (0.0, 6.0)})
    assert _step(u, 0.25, -1.0, {CP1: (0.0, 6.0), CP2: (0.0, 6.0)}) == pytest.approx(6.0)
    # CP2's new sample (6: its EV still draws) after CP1's pause, then CP2's EV pauses too
    assert _step(u, 1.0, -1.0, {CP1: (0.0, 6.0), CP2: (1.0, 6.0)}) == pytest.approx(6.0)
    assert _step(u, 1.25, -7.0, {CP1: (0.0, 6.0), CP2: (1.0, 6.0)}) == pytest.approx(12.0)


def test_a_noisy_base_load_is_held_once_not_once_per_connector():
    u = UnseenDrops(lookback_s=1.0)
    ten = {(f"CP{i}", 1): (0.0, 7.0) for i in range(10)}
    _step(u, 0.0, 5.0, ten)
    assert _step(u, 0.25, 6.0, ten) == 0.0
    assert _step(u, 0.5, 4.5, ten) == pytest.approx(1.5)


def test_the_connectors_own_ramp_down_before_its_sample_is_no_fall_past_the_look_back():
    # the relay test's trace at 60 s meter values: CP1 lowered from 24.4 to 20.5 kW follows
    # at 0.25 s (the meter falls; its stale sample says 5.1); its next sample (20.5) comes at
    # 1.0 s. The controller looks back two cycles (0.5 s): the level then, with the new
    # sample in place, is the level now: nothing held.
    u = UnseenDrops(lookback_s=0.5)
    _step(u, 0.0, 24.4 - 5.1, {CP1: (0.0, 5.1)})
    for t in (0.25, 0.5, 0.75):
        _step(u, t, 20.5 - 5.1, {CP1: (0.0, 5.1)})
    assert _step(u, 1.0, 0.0, {CP1: (1.0, 20.5)}) == 0.0
    # a look back of a whole second would have taken 24.4 - 20.5 = 3.9 kW for a fall
    u = UnseenDrops(lookback_s=1.0)
    _step(u, 0.0, 24.4 - 5.1, {CP1: (0.0, 5.1)})
    for t in (0.25, 0.5, 0.75):
        _step(u, t, 20.5 - 5.1, {CP1: (0.0, 5.1)})
    assert _step(u, 1.0, 0.0, {CP1: (1.0, 20.5)}) == pytest.approx(3.9)
