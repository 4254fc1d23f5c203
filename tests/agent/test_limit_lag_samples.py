"""A lowered limit on a connector whose draw is a sample (OCPP meter values, `power_ts` set)
ends its wait only on a sample taken after the decrease, or after `follow_s` plus the sample
interval (agent/control/limit_lag.py). Modbus draws (no sample time) are unchanged.
"""

from __future__ import annotations

from agent.control.limit_lag import LimitLag

KEY = ("CP1", 1)
FOLLOW_S, SAMPLE_S = 1.5, 1.0


def lowered(sampled: bool = True) -> LimitLag:
    """7.4 kW -> 0 acknowledged at t = 10 while the (sampled) draw read 7.4 kW."""
    lag = LimitLag(FOLLOW_S, SAMPLE_S)
    lag.lowered(KEY, 7.4, 0.0, 7.4, 10.0, sampled=sampled)
    return lag


def ask(lag: LimitLag, draw: float, t: float, ts: float | None) -> dict:
    return lag.still_allowed({KEY: draw}, t, (), {KEY: ts})


def test_the_sample_in_hand_after_the_decrease_does_not_end_the_wait():
    lag = lowered()
    # The next cycle's sample may have been taken before the charger had the new limit,
    # even when it reads 0: the old limit still counts.
    assert ask(lag, 0.0, 10.25, ts=100.0) == {KEY: 7.4}
    assert ask(lag, 0.0, 10.5, ts=100.0) == {KEY: 7.4}  # the same sample again


def test_a_newer_sample_at_the_new_limit_ends_the_wait():
    lag = lowered()
    assert ask(lag, 7.4, 10.25, ts=100.0) == {KEY: 7.4}
    assert ask(lag, 7.4, 10.5, ts=101.0) == {KEY: 7.4}  # newer, still above: not followed
    assert ask(lag, 0.0, 10.75, ts=102.0) == {}
    assert ask(lag, 7.4, 10.8, ts=103.0) == {}  # forgotten


def test_a_silent_charger_holds_its_old_limit_for_follow_s_plus_the_sample_interval():
    lag = lowered()
    for k in range(1, 10):  # 0.25 s cycles up to 12.25 s: the same sample every time
        t = 10.0 + 0.25 * k
        held = ask(lag, 7.4, t, ts=100.0)
        assert held == ({KEY: 7.4} if t < 10.0 + FOLLOW_S + SAMPLE_S else {}), t
    assert ask(lag, 7.4, 12.5, ts=100.0) == {}


def test_a_modbus_draw_still_ends_the_wait_at_once_or_after_follow_s():
    lag = lowered(sampled=False)
    assert ask(lag, 0.0, 10.25, ts=None) == {}
    lag = lowered(sampled=False)
    assert ask(lag, 7.4, 11.0, ts=None) == {KEY: 7.4}
    assert ask(lag, 7.4, 10.0 + FOLLOW_S, ts=None) == {}


def test_a_second_decrease_within_the_longer_wait_keeps_the_higher_old_limit():
    lag = lowered()
    lag.lowered(KEY, 3.0, 1.4, 7.4, 11.8, sampled=True)  # past follow_s, within + interval
    assert ask(lag, 7.4, 12.0, ts=100.0) == {KEY: 7.4}


def test_a_sample_taken_before_a_decrease_counts_at_most_at_the_lowest_limit_since():
    # Paused (7.4 -> 0) then raised again before a newer sample: the sample's 7.4 kW may be
    # an EV that has stopped and will ramp up again to its new limit.
    lag = lowered()
    lag.raised(KEY, 7.4)
    assert lag.draw_bounds({KEY: 100.0}, 10.25) == {KEY: 0.0}
    assert lag.draw_bounds({KEY: 100.0}, 20.0) == {KEY: 0.0}  # silent: held, on the safe side
    assert lag.draw_bounds({KEY: 101.0}, 20.25) == {}  # taken after the decrease
    assert lag.draw_bounds({KEY: 102.0}, 20.5) == {}


def test_a_modbus_draw_has_no_bound():
    lag = lowered(sampled=False)
    assert lag.draw_bounds({KEY: None}, 10.25) == {}


def test_a_sample_taken_before_an_increase_counts_at_the_limit_in_the_base_until_a_newer_one():
    # 0 -> 1.45 kW acknowledged at t = 10: the circuit meters show the ramp before any
    # sample does, so the base load counts the EV at its limit, not at the old sample's 0.
    lag = LimitLag(FOLLOW_S, SAMPLE_S)
    lag.raised(KEY, 1.45, 10.0, sampled=True)
    assert lag.base_draws({KEY: 100.0}, {KEY: 0.0}, 10.25) == {KEY}  # may predate it
    assert lag.base_draws({KEY: 100.0}, {KEY: 0.0}, 10.5) == {KEY}  # the same sample again
    # newer, but taken before the charger and the EV followed (their delay, the ramp)
    assert lag.base_draws({KEY: 101.0}, {KEY: 0.4}, 10.75) == {KEY}
    assert lag.base_draws({KEY: 102.0}, {KEY: 1.45}, 11.0) == frozenset()  # at its limit
    assert lag.base_draws({KEY: 103.0}, {KEY: 0.0}, 11.25) == frozenset()  # forgotten


def test_an_ev_below_its_raised_limit_counts_at_it_until_a_sample_taken_follow_s_after():
    # A new sample every cycle: the one in hand at the first cycle after 10 + FOLLOW_S (t =
    # 11.75) may predate that; the next one (t = 12) was taken once the EV could follow, and
    # what it reads (1.0, below the limit) is what the EV takes.
    lag = LimitLag(FOLLOW_S, SAMPLE_S)
    lag.raised(KEY, 1.45, 10.0, sampled=True)
    for k in range(1, 12):
        t = 10.0 + 0.25 * k
        held = lag.base_draws({KEY: 100.0 + k}, {KEY: 1.0}, t)  # it takes less than 1.45
        assert held == ({KEY} if t < 12.0 else frozenset()), t


def test_with_10_s_samples_a_raise_counts_at_its_limit_until_the_next_one_not_for_the_asked_1_s():
    # The agent asked for 1 s samples (SAMPLE_S); the charger sends one every 10 s, the last
    # at t = 9.5, taken while the EV was paused (0 kW). Raised at t = 10: the old rule let go
    # at 10 + FOLLOW_S + SAMPLE_S = 12.5, and the EV's ramp then read as the circuit's base
    # load until t = 19.5. Now it counts at its limit until that sample.
    lag = LimitLag(FOLLOW_S, SAMPLE_S)
    lag.base_draws({KEY: 1003.0}, {KEY: 0.0}, 9.5)
    lag.raised(KEY, 1.45, 10.0, sampled=True)
    for k in range(1, 40):
        t = 10.0 + 0.25 * k
        ts, kw = (1004.0, 1.45) if t >= 19.5 else (1003.0, 0.0)
        held = lag.base_draws({KEY: ts}, {KEY: kw}, t)
        assert held == ({KEY} if t < 19.5 else frozenset()), t


def test_a_charger_sending_no_sample_keeps_its_raised_ev_counted_at_its_limit():
    # At a session's start its first samples came 1.1 s apart; a bound on that interval let
    # go 3.7 s after the raise, before the next 10 s sample. No sample, no time limit.
    lag = LimitLag(FOLLOW_S, SAMPLE_S)
    lag.base_draws({KEY: 1000.0}, {KEY: 0.0}, 8.9)
    lag.base_draws({KEY: 1001.0}, {KEY: 0.0}, 10.0)
    lag.raised(KEY, 1.45, 10.0, sampled=True)
    for k in range(1, 240):  # a minute
        assert lag.base_draws({KEY: 1001.0}, {KEY: 0.0}, 10.0 + 0.25 * k) == {KEY}
    assert lag.base_draws({KEY: 1002.0}, {KEY: 0.0}, 70.25) == frozenset()  # it takes nothing


def test_a_modbus_increase_or_a_forgotten_limit_counts_as_read():
    lag = LimitLag(FOLLOW_S, SAMPLE_S)
    lag.raised(KEY, 1.45, 10.0, sampled=False)
    assert lag.base_draws({KEY: None}, {KEY: 0.0}, 10.25) == frozenset()
    lag.raised(KEY, 1.45, 10.0, sampled=True)
    lag.forget([KEY])
    assert lag.base_draws({KEY: 100.0}, {KEY: 0.0}, 10.25) == frozenset()
