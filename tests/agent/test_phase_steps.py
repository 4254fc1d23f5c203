"""An EV's phase count learned from a circuit meter's per-phase step (agent/control/
phase_steps.py), for chargers that report no per-conductor currents.

First the inference alone, sample by sample with injected times: which k explains a step,
and every ambiguous case teaching nothing. Then the learner's rules for these observations.
"""

from __future__ import annotations

import pytest

from agent.control.phase_learning import DROP_CYCLES, PhaseLearner
from agent.control.phase_steps import WINDOW_S, MeterSample, StepWatch, explained_phases

V = 230.0
A, B, C = ("CP1", 1), ("CP2", 1), ("CP3", 1)
STRAIGHT = (0, 1, 2)  # L1L2L3
ROTATED = (1, 2, 0)  # L2L3L1: its L1 on grid L2
LEARNABLE = {A: STRAIGHT, B: STRAIGHT, C: ROTATED}


def amps(kw: float) -> float:
    return kw * 1000 / V


@pytest.mark.parametrize(("step_kw", "change", "grid_phases", "expected"), [
    (7.4, (amps(7.4), 0.0, 0.0), STRAIGHT, 1),
    (7.4, (amps(7.4) / 3,) * 3, STRAIGHT, 3),
    (7.4, (amps(7.4) / 2, amps(7.4) / 2, 0.0), STRAIGHT, 2),
    (-4.0, (-amps(4.0), 0.0, 0.0), STRAIGHT, 1),  # a decrease steps too
    (7.4, (0.0, amps(7.4), 0.0), ROTATED, 1),  # its L1 on grid L2
    (7.4, (amps(7.4) / 2, amps(7.4) / 2, 0.0), ROTATED, None),  # L1 and L2: not its first two
    (7.4, (amps(7.4) * 0.95, 0.3, -0.2), STRAIGHT, 1),  # noise within a tenth of 32 A
    (7.4, (amps(7.4), 4.0, 0.0), STRAIGHT, None),  # a base load stepping on L2 with it
    (7.4, (amps(7.4) * 0.7, 0.0, 0.0), STRAIGHT, None),  # a third of it missing
    (7.4, (amps(7.4), 0.0, 0.0), (0,), 1),  # a 1-phase charger: only k = 1 is asked
    (7.4, (amps(7.4) / 3,) * 3, (0,), None),  # ... and it cannot draw on three
])  # fmt: skip
def test_which_phase_count_explains_a_step(step_kw, change, grid_phases, expected):
    assert explained_phases(step_kw, change, grid_phases, V) == expected


def sample(t: float, currents: tuple[float, float, float], **kw: float) -> MeterSample:
    power = {A: 0.0, B: 0.0, C: 0.0}
    power.update({({"a": A, "b": B, "c": C})[k]: v for k, v in kw.items()})
    return MeterSample(t, currents, power)


def test_a_step_of_one_ev_with_the_others_steady_teaches_its_count():
    watch = StepWatch(V)
    assert watch.observe("sub", sample(0.0, (0.0, 0.0, 0.0)), LEARNABLE) == {}  # the anchor
    assert watch.observe("sub", sample(0.25, (amps(7.4), 0.0, 0.0), a=7.4), LEARNABLE) == {A: 1}
    # the next EV's step, on the rotated charger, on three phases
    third = amps(11.0) / 3
    after = (amps(7.4) + third, third, third)
    assert watch.observe("sub", sample(0.5, after, a=7.4, c=11.0), LEARNABLE) == {C: 3}
    # steady: nothing more
    assert watch.observe("sub", sample(0.75, after, a=7.4, c=11.0), LEARNABLE) == {}


def test_two_evs_changing_together_teach_nothing():
    watch = StepWatch(V)
    watch.observe("sub", sample(0.0, (amps(7.4), 0.0, 0.0), a=7.4), LEARNABLE)
    both = (amps(3.7) + amps(3.7), 0.0, 0.0)
    assert watch.observe("sub", sample(0.25, both, a=3.7, b=3.7), LEARNABLE) == {}
    # from that sample on, one step alone teaches again
    assert watch.observe("sub", sample(0.5, (amps(3.7), 0.0, 0.0), a=3.7), LEARNABLE) == {B: 1}


def test_another_ev_moving_a_little_during_the_step_teaches_nothing():
    watch = StepWatch(V)
    watch.observe("sub", sample(0.0, (amps(5.0), 0.0, 0.0), a=5.0), LEARNABLE)
    moved = (amps(5.3) + amps(7.0), 0.0, 0.0)
    assert watch.observe("sub", sample(0.25, moved, a=5.3, b=7.0), LEARNABLE) == {}


def test_a_base_load_moving_with_the_step_teaches_nothing():
    watch = StepWatch(V)
    watch.observe("sub", sample(0.0, (10.0, 10.0, 10.0)), LEARNABLE)
    # an EV of 7.4 kW on L1 and, at the same instant, a 3-phase load of 8 A per phase off:
    # L1 +24.2 A, L2 and L3 -8 A; neither 1 (32.2, 0, 0) nor 3 (10.7 each) is within 3.2 A
    moved = (10.0 + amps(7.4) - 8.0, 2.0, 2.0)
    assert watch.observe("sub", sample(0.25, moved, a=7.4), LEARNABLE) == {}


def test_a_stale_or_missing_reading_restarts_the_comparison():
    watch = StepWatch(V)
    watch.observe("sub", sample(0.0, (0.0, 0.0, 0.0)), LEARNABLE)
    assert watch.observe("sub", None, LEARNABLE) == {}  # stale: the anchor is dropped
    # the EV stepped while the meter was stale: the next sample is only an anchor
    assert watch.observe("sub", sample(0.5, (amps(7.4), 0.0, 0.0), a=7.4), LEARNABLE) == {}
    assert watch.observe("sub", sample(0.75, (amps(7.4), 0.0, 0.0), a=7.4), LEARNABLE) == {}


def test_the_same_reading_twice_is_not_a_step():
    watch = StepWatch(V)
    watch.observe("sub", sample(1.0, (0.0, 0.0, 0.0)), LEARNABLE)
    # the connectors were read again, the meter was not (same reading time): no comparison
    assert watch.observe("sub", sample(1.0, (0.0, 0.0, 0.0), a=7.4), LEARNABLE) == {}


def test_a_ramp_over_several_readings_makes_one_step():
    watch = StepWatch(V)
    watch.observe("sub", sample(0.0, (0.0, 0.0, 0.0)), LEARNABLE)
    assert watch.observe("sub", sample(0.25, (amps(0.7), 0.0, 0.0), a=0.7), LEARNABLE) == {}
    assert watch.observe("sub", sample(0.5, (amps(1.4), 0.0, 0.0), a=1.4), LEARNABLE) == {}
    assert watch.observe("sub", sample(0.75, (amps(2.1), 0.0, 0.0), a=2.1), LEARNABLE) == {A: 1}


def test_an_anchor_older_than_the_window_is_replaced():
    watch = StepWatch(V)
    watch.observe("sub", sample(0.0, (0.0, 0.0, 0.0)), LEARNABLE)
    late = sample(WINDOW_S + 0.25, (amps(7.4), 0.0, 0.0), a=7.4)
    assert watch.observe("sub", late, LEARNABLE) == {}  # too long: only a new anchor
    again = sample(WINDOW_S + 0.5, (amps(7.4) + amps(4.0), 0.0, 0.0), a=7.4, b=4.0)
    assert watch.observe("sub", again, LEARNABLE) == {B: 1}


def test_a_connector_the_meter_may_not_teach_learns_nothing():
    watch = StepWatch(V)
    watch.observe("sub", sample(0.0, (0.0, 0.0, 0.0)), {B: STRAIGHT})
    assert watch.observe("sub", sample(0.25, (amps(7.4), 0.0, 0.0), a=7.4), {B: STRAIGHT}) == {}


def test_each_circuit_keeps_its_own_anchor():
    watch = StepWatch(V)
    watch.observe("sub", sample(0.0, (0.0, 0.0, 0.0)), LEARNABLE)
    watch.observe("other", None, LEARNABLE)
    assert watch.observe("sub", sample(0.25, (amps(7.4), 0.0, 0.0), a=7.4), LEARNABLE) == {A: 1}


# ---- the learner's rules for circuit meter steps ---------------------------------------

KEY = ("CP1", 1)


def test_until_a_step_shows_its_count_a_session_is_booked_as_assumed():
    learner = PhaseLearner()
    assert learner.observe_steps(KEY, "s1", None, 3).words() == "1-phase (assumed)"
    count = learner.observe_steps(KEY, "s1", 1, 3)
    assert (count.words(), count.learned, count.measured) == (
        "1-phase (circuit meter step)", True, False)
    assert learner.observe_steps(KEY, "s1", None, 3).phases == 1  # no step: it holds


def test_steps_follow_the_learners_rules_more_at_once_fewer_after_a_run():
    learner = PhaseLearner()
    learner.observe_steps(KEY, "s1", 1, 3)
    assert learner.observe_steps(KEY, "s1", 3, 3).phases == 3  # at once
    for _ in range(DROP_CYCLES - 1):
        assert learner.observe_steps(KEY, "s1", 1, 3).phases == 3
        assert learner.observe_steps(KEY, "s1", None, 3).phases == 3  # no step: no break
    assert learner.observe_steps(KEY, "s1", 1, 3).phases == 1
    # a new session starts again
    assert learner.observe_steps(KEY, "s2", None, 3).words() == "1-phase (assumed)"


def test_a_step_never_books_more_phases_than_the_charger_has():
    learner = PhaseLearner()
    assert learner.observe_steps(KEY, "s1", 3, 1).phases == 1

