"""Consumption caps on chargers that report their draw less often than they are read (OCPP
meter values every MeterValueSampleInterval): a repeated sample is one observation, so a
sample taken while an EV ramps up does not cap it until the next sample shows its draw."""

from __future__ import annotations

from agent.control.caps import CapTracker

PERIOD = 0.25  # s, the control cycle


def feed(tracker: CapTracker, samples: list[tuple[float, float]], limit_kw: float,
         seconds: float) -> list[float | None]:
    """Cycle for `seconds`; each cycle sees the latest (arrival time, kW) sample so far."""
    caps, t = [], 0.0
    while t < seconds:
        arrived = [s for s in samples if s[0] <= t]
        at, kw = arrived[-1]
        caps.append(tracker.update("s1", kw, limit_kw, 0.0, t, sample_t=at))
        t += PERIOD
    return caps


def test_a_ramp_sample_repeated_for_a_minute_does_not_cap():
    # 3.84 kW seen at 0.5 s while the EV ramps to 40 kW; the next sample comes 60 s later.
    caps = feed(CapTracker(0.3, 0.0, cap_after_s=1.0), [(0.0, 0.0), (0.5, 3.84), (60.5, 40.0)],
                limit_kw=40.0, seconds=70.0)
    assert all(c is None for c in caps)


def test_an_ev_that_keeps_drawing_less_is_capped_at_its_second_sample():
    caps = feed(CapTracker(0.3, 0.0, cap_after_s=1.0), [(0.0, 10.0), (60.0, 10.0)],
                limit_kw=40.0, seconds=61.0)
    first_cap = next(i for i, c in enumerate(caps) if c is not None)
    assert first_cap * PERIOD == 60.0  # not at 1 s: one sample is one observation
    assert caps[-1] == 10.3


def test_the_same_sample_every_cycle_without_times_still_caps_after_cap_after_s():
    # Modbus chargers: every read is a new measurement (sample_t None), as before.
    tracker = CapTracker(0.3, 0.0, cap_after_s=1.0)
    caps = [tracker.update("s1", 3.84, 40.0, 0.0, i * PERIOD) for i in range(8)]
    assert caps[:4] == [None] * 4 and caps[4] == 3.84 + 0.3


def test_a_repeated_sample_leaves_a_cap_in_force_as_it_is():
    tracker = CapTracker(0.3, 0.0, cap_after_s=0.0)
    assert tracker.update("s1", 10.0, 40.0, 0.0, 0.0, sample_t=1.0) == 10.3
    assert tracker.update("s1", 10.0, 10.3, 0.0, 5.0, sample_t=1.0) == 10.3
    assert tracker.update("s1", 10.3, 10.3, 0.0, 9.0, sample_t=2.0) is None  # drew up to it


def test_two_samples_taken_during_a_slow_ramp_do_not_cap():
    # 60 s samples of an EV ramping to its 40 kW limit: 3.84 kW, then 18 kW, then 40 kW.
    caps = feed(CapTracker(0.3, 0.0, cap_after_s=1.0),
                [(0.0, 0.0), (0.5, 3.84), (60.5, 18.0), (120.5, 40.0)],
                limit_kw=40.0, seconds=130.0)
    assert all(c is None for c in caps)


def test_an_ev_that_settles_below_its_limit_is_capped_once_its_draw_stops_rising():
    # ramp samples 3.84 and 18 kW, then it stays at 18.1 kW: capped at the sample after it settled
    caps = feed(CapTracker(0.3, 0.0, cap_after_s=1.0),
                [(0.0, 0.0), (0.5, 3.84), (60.5, 18.0), (120.5, 18.1)],
                limit_kw=40.0, seconds=125.0)
    first_cap = next(i for i, c in enumerate(caps) if c is not None)
    assert first_cap * PERIOD == 120.5 and abs(caps[-1] - 18.4) < 1e-9


def test_a_charger_that_has_sent_no_sample_is_one_observation_of_nothing():
    # The OCPP driver stamps "no sample yet" with one constant time (agent/ocpp/charger.py),
    # so a silent charger is not read as drawing 0 afresh every cycle.
    caps = feed(CapTracker(0.3, 0.0, cap_after_s=1.0), [(0.0, 0.0), (30.0, 11.0)],
                limit_kw=11.0, seconds=40.0)
    assert all(c is None for c in caps)


def wanted(tracker: CapTracker, samples: list[tuple[float, float]], limit_kw: float,
           seconds: float) -> list[tuple[float, float | None, list[str]]]:
    """As `feed`, with each cycle's `samples_wanted` after its update: (t, cap, wanted)."""
    out, t = [], 0.0
    while t < seconds:
        at, kw = [s for s in samples if s[0] <= t][-1]
        cap = tracker.update("s1", kw, limit_kw, 0.0, t, sample_t=at)
        out.append((t, cap, tracker.samples_wanted(t)))
        t += PERIOD
    return out


def test_a_cap_waiting_only_on_the_next_sample_asks_for_it_once():
    # 10 kW under a 40 kW limit from its first sample on; samples every 10 s. After
    # cap_after_s the cap needs only a newer sample: wanted once, not every cycle.
    cycles = wanted(CapTracker(0.3, 0.0, cap_after_s=3.0), [(0.0, 10.0), (10.0, 10.0)],
                    limit_kw=40.0, seconds=11.0)
    asked = [t for t, _, w in cycles if w == ["s1"]]
    assert asked == [3.0]
    assert all(c is None for t, c, _ in cycles if t < 10.0)
    assert cycles[-1][1] == 10.3  # the next sample caps it, and nothing more is wanted
    assert all(w == [] for t, _, w in cycles if t >= 10.0)


def test_a_sample_asked_for_and_answered_caps_at_once():
    # The asked-for sample arrives at 3.5 s (a triggered meter value): capped then, not at 10 s.
    cycles = wanted(CapTracker(0.3, 0.0, cap_after_s=3.0), [(0.0, 10.0), (3.5, 10.0)],
                    limit_kw=40.0, seconds=5.0)
    first_cap = next(t for t, c, _ in cycles if c is not None)
    assert first_cap == 3.5


def test_no_sample_is_wanted_for_a_draw_at_its_limit_a_ramp_or_a_modbus_charger():
    at_limit = wanted(CapTracker(0.3, 0.0, cap_after_s=1.0), [(0.0, 40.0)], 40.0, 5.0)
    assert all(w == [] for _, _, w in at_limit)
    # each sample higher than the last: an EV ramping up, its clock starts again each time
    ramp = wanted(CapTracker(0.3, 0.0, cap_after_s=3.0),
                  [(0.0, 1.0), (2.0, 5.0), (4.0, 9.0), (6.0, 13.0)], 40.0, 8.0)
    assert [t for t, _, w in ramp if w] == []
    modbus = CapTracker(0.3, 0.0, cap_after_s=1.0)  # every read a new draw: no sample times
    for i in range(8):
        modbus.update("s1", 10.0, 40.0, 0.0, i * PERIOD)
        assert modbus.samples_wanted(i * PERIOD) == []
