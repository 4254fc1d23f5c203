"""1 <-> 3 phase switching, decided cycle by cycle (agent/control/phase_switch.py).

Each row is one control cycle of one connector: what the cycle observed, then what the
switcher answered (how the session is booked this cycle, whether its target is held at 0,
and what to write to the charger's phase register). Time is the injected clock: no sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from agent.control.phase_switch import Observation, PhaseSwitcher, SwitchRules

KEY = ("CP1", 1)
PAUSE_S = 3.0
RULES = SwitchRules(hold_s=5.0, min_interval_s=10.0, confirm_timeout_s=8.0)


@dataclass
class Clock:
    t: float = 0.0

    def __call__(self) -> float:
        return self.t


def obs(reg: int | None = 3, limit: float | None = 4.14, draw: float = 4.14, *,
        paused: bool = False, one: bool = False, three: bool = False,
        settled: bool = True, relieves: bool = False) -> Observation:  # fmt: skip
    return Observation(reg, PAUSE_S, limit, draw, paused, one, three, settled, relieves)


# (t, observation, expected (booking mode, held at 0), expected register write)
DOWN_AND_UP = [
    (0, obs(), ("native", False), None),  # charging on three phases
    (1, obs(limit=0.0, draw=4.14, paused=True), ("native", False), None),  # nowhere to go
    # paused on three, one phase would fit: the switch starts (booked on one from now)
    (2, obs(limit=0.0, draw=3.0, paused=True, one=True), ("native", False), None),
    (3, obs(limit=0.0, draw=1.0), ("one", True), None),  # still ramping down: no write
    (4, obs(limit=0.0, draw=0.0), ("one", True), 1),  # limit 0 followed: write 1
    (5, obs(reg=3, limit=0.0, draw=0.0), ("one", True), None),  # the charger pauses
    (6, obs(reg=1, limit=0.0, draw=0.0), ("one", True), None),  # reads 1, pause not over
    (7, obs(reg=1, limit=0.0, draw=0.0), ("one", True), None),  # pause over: switched
    (8, obs(reg=1, limit=1.38, draw=1.38), ("one", False), None),  # charges on one phase
    (9, obs(reg=1, limit=3.0, draw=3.0, three=True), ("one", False), None),  # three fit...
    (10, obs(reg=1, limit=3.0, draw=3.0, three=True), ("one", False), None),
    (11, obs(reg=1, limit=3.0, draw=3.0), ("one", False), None),  # ...not for hold_s: reset
    (12, obs(reg=1, limit=3.0, draw=3.0, three=True), ("one", False), None),
    (16, obs(reg=1, limit=3.0, draw=3.0, three=True), ("one", False), None),  # 4 s of 5
    (17, obs(reg=1, limit=3.0, draw=3.0, three=True), ("one", False), None),  # 5 s: go up
    # booked back on three (others lowered to make room), its own target held at 0
    (18, obs(reg=1, limit=3.0, draw=3.0), ("back", True), None),
    (19, obs(reg=1, limit=0.0, draw=0.0, settled=False), ("back", True), None),  # lowering
    (20, obs(reg=1, limit=0.0, draw=0.0, settled=True), ("back", True), 3),  # room: write 3
    (21, obs(reg=1, limit=0.0, draw=0.0), ("back", True), None),
    (23, obs(reg=3, limit=0.0, draw=0.0), ("back", True), None),  # confirmed after the pause
    (24, obs(reg=3, limit=0.0, draw=0.0), ("native", False), None),  # increases as usual
    # paused again at once: the last switch was 4 s ago, the interval is 10 s
    (25, obs(reg=3, limit=0.0, draw=0.0, paused=True, one=True), ("native", False), None),
    (29, obs(reg=3, limit=0.0, draw=0.0, paused=True, one=True), ("native", False), None),
    # 10 s after the last write: the switch down starts, and goes out the next cycle
    (30, obs(reg=3, limit=0.0, draw=0.0, paused=True, one=True), ("native", False), None),
    (31, obs(reg=3, limit=0.0, draw=0.0), ("one", True), 1),
]


def play(rows, switcher: PhaseSwitcher, clock: Clock, session: str = "s1",
         acks: dict[float, bool] | None = None) -> None:  # fmt: skip
    for t, o, (mode, hold), write in rows:
        clock.t = float(t)
        b = switcher.booking(KEY, session, o.charge_phases)
        got = switcher.step(KEY, o)
        assert ((b.mode, b.hold), got) == ((mode, hold), write), f"t={t}"
        if got is not None:
            switcher.acknowledged(KEY, (acks or {}).get(t, True))


def test_down_when_paused_on_three_and_one_fits_then_up_after_the_hold_without_flapping():
    clock = Clock()
    play(DOWN_AND_UP, PhaseSwitcher(RULES, clock), clock)


def test_a_failed_write_is_tried_again_and_a_silent_charger_is_given_up():
    clock = Clock()
    sw = PhaseSwitcher(RULES, clock)
    play([
        (0, obs(limit=0.0, draw=0.0, paused=True, one=True), ("native", False), None),
        (1, obs(limit=0.0, draw=0.0), ("one", True), 1),  # not acknowledged (below)
        (2, obs(limit=0.0, draw=0.0), ("one", True), 1),  # written again
        # the charger ignores it (not allowed to switch): the register keeps reading 3
        (5, obs(reg=3, limit=0.0, draw=0.0), ("one", True), None),
        (12, obs(reg=3, limit=0.0, draw=0.0), ("one", True), None),  # 10 s < 3 + 8
        (13, obs(reg=3, limit=0.0, draw=0.0), ("one", True), None),  # 11 s: given up
        (14, obs(reg=3, limit=4.14, draw=4.14), ("native", False), None),  # booked as read
    ], sw, clock, acks={1: False})


def test_down_while_charging_when_one_phase_would_let_a_paused_session_charge():
    clock = Clock()
    sw = PhaseSwitcher(RULES, clock)
    play([
        (0, obs(), ("native", False), None),  # charging on three, nobody paused
        # another session is paused for its minimum; on one phase this one frees its phase
        (1, obs(relieves=True), ("native", False), None),  # the switch starts
        (2, obs(limit=4.14, draw=4.14), ("one", True), None),  # target 0: not followed yet
        (3, obs(limit=0.0, draw=0.5), ("one", True), None),  # still drawing: no write
        (4, obs(limit=0.0, draw=0.0), ("one", True), 1),  # idle at 0: write 1
        (7, obs(reg=1, limit=0.0, draw=0.0), ("one", True), None),  # pause over: switched
        (8, obs(reg=1, limit=1.38, draw=1.38), ("one", False), None),
    ], sw, clock)
    assert not sw.busy()
    # relief never starts a switch within min_interval_s of the last one
    clock2 = Clock()
    sw2 = PhaseSwitcher(RULES, clock2)
    play([
        (0, obs(relieves=True), ("native", False), None),
        (1, obs(limit=0.0, draw=0.0), ("one", True), 1),
    ], sw2, clock2)
    assert sw2.busy() and not sw2.may_start(KEY)
    play([
        (4, obs(reg=1, limit=0.0, draw=0.0), ("one", True), None),
        (5, obs(reg=1, limit=1.38, draw=1.38), ("one", False), None),
    ], sw2, clock2)
    assert not sw2.busy() and not sw2.may_start(KEY)  # written at 1: rested from 11 on
    clock2.t = 11.0
    assert sw2.may_start(KEY)


def test_a_new_session_takes_the_count_the_charger_reads():
    clock = Clock()
    sw = PhaseSwitcher(RULES, clock)
    play([(0, obs(reg=1, limit=0.0, draw=0.0), ("one", False), None)], sw, clock, "left-1")
    sw.forget([])
    play([(1, obs(reg=3), ("native", False), None)], sw, clock, "next")
    # a register changed behind the agent's back is believed
    play([(2, obs(reg=1), ("one", False), None)], sw, clock, "next")


def test_the_settings_refuse_an_interval_shorter_than_the_hold():
    from pydantic import ValidationError

    from agent.config.phase_switch import PhaseSwitchSettings

    assert not PhaseSwitchSettings().enabled  # opt-in
    with pytest.raises(ValidationError, match="min_interval_s"):
        PhaseSwitchSettings(enabled=True, hold_s=60.0, min_interval_s=30.0)
    with pytest.raises(ValidationError, match="margin_a"):
        PhaseSwitchSettings(margin_a=-1.0)
