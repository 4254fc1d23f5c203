"""An EV's phase count learned from its charger's per-conductor currents (issue 13).

The rule (agent/control/phase_learning.py) reading by reading: what one reading shows, more
phases adopted at once, fewer only after DROP_CYCLES consistent meaningful readings, low
draws (tapering, pausing) ignored. Then cycle by cycle through the controller: a metered
32 A sub-board with 1-phase EVs on 3-phase chargers carries more once their phases are
learned, never a phase over its fuse; a charger limited in amps keeps its own count.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st_

from agent.config.settings import AgentSettings
from agent.control.phase_learning import DROP_CYCLES, PhaseLearner, observed_phases
from agent.model.snapshot import CircuitMeterState, Snapshot
from tests.agent.cycle_helpers import Station, settings

KEY = ("CP1", 1)
ONE = (16.0, 0.2, 0.1)  # a 1-phase EV: a few hundred mA on the others at most
THREE = (10.0, 10.1, 9.8)
TAPER = (2.5, 0.0, 0.0)  # end of charge: too little to say anything


@pytest.mark.parametrize(("currents", "expected"), [
    (ONE, 1), (THREE, 3), ((10.0, 9.9, 0.3), 2),
    ((10.0, 0.3, 9.0), 3),  # L1 and L3: booked on 3, so L3 is covered
    ((0.2, 12.0, 0.1), 2),  # L2 alone (odd wiring): booked up to L2
    ((20.0, 3.0, 0.0), 1),  # 3 A beside 20 A is leakage, not a phase (< 25 %)
    ((6.0, 2.0, 2.0), 3),  # at 6 A, 2 A is a phase (>= 1 A and >= 25 %)
    (TAPER, None), ((0.0, 0.0, 0.0), None), ((float("nan"), 10.0, 10.0), None),
])  # fmt: skip
def test_what_one_reading_shows(currents, expected):
    assert observed_phases(currents, 3) == expected


def test_a_one_phase_charger_counts_its_one_conductor_only():
    assert observed_phases((16.0, 16.0, 16.0), 1) == 1


def test_without_readings_a_session_keeps_its_chargers_phases():
    learner = PhaseLearner()
    for _ in range(3):
        count = learner.observe(KEY, "s1", None, 3)
    assert (count.phases, count.measured, count.words()) == (3, False, "3-phase (configured)")


def test_until_the_ev_draws_it_is_booked_on_one_phase_then_on_what_it_shows():
    learner = PhaseLearner()
    assert learner.observe(KEY, "s1", (0.0, 0.0, 0.0), 3).words() == "1-phase (assumed)"
    assert learner.observe(KEY, "s1", TAPER, 3).words() == "1-phase (assumed)"
    assert learner.observe(KEY, "s1", ONE, 3).words() == "1-phase (measured)"
    other = PhaseLearner()
    other.observe(KEY, "s1", (0.0, 0.0, 0.0), 3)
    assert other.observe(KEY, "s1", THREE, 3).words() == "3-phase (measured)"  # at once


def test_fewer_phases_only_after_a_consistent_run():
    learner = PhaseLearner()
    assert learner.observe(KEY, "s1", THREE, 3).phases == 3
    for _ in range(DROP_CYCLES - 1):
        assert learner.observe(KEY, "s1", ONE, 3).phases == 3
    assert learner.observe(KEY, "s1", ONE, 3).words() == "1-phase (measured)"


def test_more_phases_are_booked_at_once():
    learner = PhaseLearner(drop_cycles=2)
    learner.observe(KEY, "s1", THREE, 3)
    for _ in range(2):
        learner.observe(KEY, "s1", ONE, 3)
    assert learner.observe(KEY, "s1", ONE, 3).phases == 1
    assert learner.observe(KEY, "s1", THREE, 3).phases == 3  # the very first reading


def test_a_phase_dropping_out_at_the_end_of_charge_keeps_the_booking():
    learner = PhaseLearner()
    assert learner.observe(KEY, "s1", THREE, 3).phases == 3
    for _ in range(10 * DROP_CYCLES):  # tapering on one phase, too little to count
        assert learner.observe(KEY, "s1", TAPER, 3).phases == 3
    assert learner.observe(KEY, "s1", THREE, 3).phases == 3


def test_an_interrupted_drop_starts_counting_again():
    learner = PhaseLearner()
    learner.observe(KEY, "s1", THREE, 3)
    for _ in range(DROP_CYCLES - 1):
        learner.observe(KEY, "s1", ONE, 3)
    learner.observe(KEY, "s1", THREE, 3)  # back on three: the run of drops is void
    for _ in range(DROP_CYCLES - 1):
        assert learner.observe(KEY, "s1", ONE, 3).phases == 3
    # low draws in between neither count nor break the run
    learner.observe(KEY, "s1", TAPER, 3)
    assert learner.observe(KEY, "s1", ONE, 3).phases == 1


def test_a_drop_goes_to_the_most_phases_seen_while_dropping():
    learner = PhaseLearner(drop_cycles=4)
    learner.observe(KEY, "s1", THREE, 3)
    seen = [learner.observe(KEY, "s1", c, 3).phases
            for c in (ONE, (10.0, 10.0, 0.0), ONE, ONE)]
    assert seen == [3, 3, 3, 2]


def test_a_new_session_or_an_ended_one_starts_again():
    learner = PhaseLearner()
    assert learner.observe(KEY, "s1", THREE, 3).phases == 3
    assert learner.observe(KEY, "s2", None, 3).words() == "3-phase (configured)"  # another EV
    assert learner.observe(KEY, "s2", ONE, 3).words() == "1-phase (measured)"
    learner.forget([])
    assert learner.observe(KEY, "s2", None, 3).words() == "3-phase (configured)"


def test_drop_cycles_must_be_positive():
    with pytest.raises(ValueError, match="drop_cycles"):
        PhaseLearner(drop_cycles=0)


readings = st_.sampled_from([ONE, THREE, TAPER, (10.0, 10.0, 0.0), None])


@hsettings(max_examples=300, deadline=None)
@given(st_.lists(readings, min_size=1, max_size=40))
def test_every_conductor_carrying_current_is_booked_in_the_cycle_it_is_seen(sequence):
    """Whatever the history: never fewer phases booked than this very cycle's reading shows,
    and once more were seen, fewer only after DROP_CYCLES readings in a row that show it."""
    learner = PhaseLearner()
    most = 0  # the count last measured at or above which a drop needs a run
    run = 0
    for currents in sequence:
        booked = learner.observe(KEY, "s1", currents, 3).phases
        seen = observed_phases(currents, 3) if currents is not None else None
        if seen is not None:
            assert booked >= seen
            if seen >= most:
                most, run = seen, 0
            else:
                run += 1
                if run >= DROP_CYCLES:
                    most, run = booked, 0
        if most:
            assert booked == most or run == 0


# ---- cycle by cycle through the controller --------------------------------------------

VOLTS = 230.0
RATING_A, MARGIN_A = 32.0, 1.0
KEYS = (("CP1", 1), ("CP2", 1), ("CP3", 1))
# CP1 and CP2 wired alike (their L1 on grid L1), CP3 rotated (its L1 on grid L2)
ROTATION = {"CP1": (0, 1, 2), "CP2": (0, 1, 2), "CP3": (1, 2, 0)}
# 1-phase EVs: two of 32 A on grid L1, one of 13 A on grid L2
EV_MAX_KW = {"CP1": 7.4, "CP2": 7.4, "CP3": 3.0}


def sub_board(*, metered: bool = True) -> AgentSettings:
    s = settings(station={
        "grid_capacity_kw": 200.0,
        "circuits": [{"id": "sub", "max_current_a": RATING_A,
                      **({"meter": "sub-meter"} if metered else {})}],
        "chargers": [{"id": cid, "device": f"cp{n}", "max_power_kw": 11.0, "connectors": 1,
                      "circuit": "sub",
                      "phase_rotation": "L2L3L1" if cid == "CP3" else "L1L2L3"}
                     for n, cid in enumerate(("CP1", "CP2", "CP3"), 1)],
    })  # fmt: skip
    devices = [d.model_dump() for d in s.devices] + [
        {"name": "sub-meter", "kind": "meter", "profile": "sim-meter",
         "endpoint": "tcp://127.0.0.1:7"},
        {"name": "cp3", "kind": "charger", "profile": "sim-charger",
         "endpoint": "tcp://127.0.0.1:8"},
    ]  # fmt: skip
    return AgentSettings(**{**s.model_dump(exclude={"devices"}), "devices": devices})


@dataclass
class PhasedSubBoard(Station):
    """1-phase EVs (all current on their charger's L1) on 3-phase chargers under a 32 A
    sub-board; the chargers report each conductor's current (`report`), the sub-board's
    meter what the physics gives per grid phase."""

    report: bool = True
    in_amps: bool = False  # the chargers' limits are amps per phase (Alfen)
    metered: bool = True
    delivered: float = 0.0  # sum over `run`'s cycles of what the EVs draw (kW x cycles)

    def conductor_currents(self, key) -> tuple[float, float, float]:
        return (self.draw.get(key, 0.0) * 1000 / VOLTS, 0.0, 0.0)

    def sub_currents(self) -> tuple[float, float, float]:
        amps = [0.0, 0.0, 0.0]
        for key in KEYS:
            for q, a in enumerate(self.conductor_currents(key)):
                amps[ROTATION[key[0]][q]] += a
        return (amps[0], amps[1], amps[2])

    def snapshot(self) -> Snapshot:
        snap = super().snapshot()
        chargers = tuple(
            replace(ch, limit_in_amps=self.in_amps, connectors=tuple(
                replace(c, currents_a=self.conductor_currents((c.charger_id, c.idx))
                        if self.report else None) for c in ch.connectors))
            for ch in snap.chargers)  # fmt: skip
        amps = self.sub_currents()
        meters = (CircuitMeterState("sub", amps, sum(amps) * VOLTS / 1000),) if self.metered else ()
        return replace(snap, chargers=chargers, circuit_meters=meters)

    def run(self, cycles: int) -> list[float]:
        """`cycles` cycles, each EV drawing what its limit allows up to its maximum;
        returns the worst phase of the sub-board after each."""
        worst = []
        for _ in range(cycles):
            self.cycle()
            for key in KEYS:
                self.draw[key] = min(self.limits[key], EV_MAX_KW[key[0]])
            self.delivered += sum(self.draw.values())
            worst.append(max(self.sub_currents()))
        return worst


def test_learned_one_phase_evs_get_more_out_of_a_metered_sub_board():
    totals, draws, words = {}, {}, {}
    for report in (False, True):
        st = PhasedSubBoard(cfg=sub_board(), base_kw=10.0, report=report)
        for key in KEYS:
            st.plug(key)
        worst = st.run(120)
        assert max(worst) <= RATING_A - MARGIN_A + 1e-6, (report, max(worst))
        totals[report] = st.delivered / 120  # mean kW over the run
        draws[report] = dict(st.draw)
        d = st.cycle()
        words[report] = {c.words() for c in d.phases.values()}
    # Learned: grid L1's 31 A shared by CP1 and CP2 (3.56 kW each), CP3's EV on L2 takes
    # its 3 kW. Without conductor readings, the meter's steps teach (agent/control/
    # phase_steps.py, tests/agent/test_phase_steps.py) all three their one phase, CP3's in
    # the cycle of CP1's decrease (CP1's count known: its change taken off the step). A
    # count from a step does not narrow the apply rule's weights, so CP3's cap (4.14 kW, 3
    # drawn) counts a third of its undrawn 1.14 kW on L1, its third conductor, and the
    # allocator keeps that free (with the start reserve's slack): CP1 and CP2 share
    # 31 - 1.94 A. Before CP3 was learned it stayed assumed, its start's reserve on L1:
    # 8.4 kW mean. Before that learning the EVs were taken as 3-phase, a third of each on
    # L1, and the meter's L1 showed two thirds of CP1's current as base load: at most
    # 7.13 kW, CP1 alone on L1.
    ideal = (RATING_A - MARGIN_A) * VOLTS / 1000 + EV_MAX_KW["CP3"]
    reserve_a = (4.14 - EV_MAX_KW["CP3"]) / 3 * 1000 / VOLTS * 1.05 + 0.2  # tree.START_SLACK
    stepped = (RATING_A - MARGIN_A - reserve_a) * VOLTS / 1000 / 2
    assert words[False] == {"1-phase (circuit meter step)"}, words
    assert draws[False][("CP1", 1)] == pytest.approx(stepped, abs=0.02), draws
    assert draws[False][("CP2", 1)] == pytest.approx(stepped, abs=0.02), draws
    assert totals[False] >= (RATING_A - MARGIN_A) * VOLTS / 1000 + 1.0, totals
    assert totals[True] >= 0.95 * ideal, (totals, st.draw)
    assert totals[True] > totals[False], totals
    assert st.draw[("CP3", 1)] == EV_MAX_KW["CP3"], st.draw
    assert st.draw[("CP1", 1)] == pytest.approx(st.draw[("CP2", 1)], abs=0.1), st.draw
    assert {r.session_id: r.phases for r in d.inputs.sessions} == {
        st.session_id(k): 1 for k in KEYS}
    assert all(r.min_power_kw == pytest.approx(1.38) for r in d.inputs.sessions)
    assert words[True] == {"1-phase (measured)"}
    assert all(s["phases"] == 1 for s in d.request["sessions"])


def test_an_unmetered_sub_board_holds_its_fuse_when_the_chargers_report_their_phases():
    """Without a meter the tree alone bounds the EVs. Booked as 3-phase (the configuration)
    they put half as much again as the fuse on L1; booked on one phase until measured, and
    measured, they fit from the first cycle."""
    worst = {}
    for report in (False, True):
        st = PhasedSubBoard(cfg=sub_board(metered=False), base_kw=10.0, metered=False,
                            report=report)
        for key in KEYS:
            st.plug(key)
        worst[report] = max(st.run(60))
    assert worst[False] > 1.5 * RATING_A, worst
    # Every decrease under a circuit is written, even one smaller than the deadband (apply.py):
    # without a meter (and its margin) a skipped one stayed over the share (2 A on L1).
    assert worst[True] <= RATING_A + 1e-6, worst


def test_a_charger_limited_in_amps_keeps_its_own_phase_count():
    st = PhasedSubBoard(cfg=sub_board(), base_kw=10.0, in_amps=True)
    for key in KEYS:
        st.plug(key)
    st.run(40)
    d = st.cycle()
    words = {c.words() for c in d.phases.values()}
    assert "1-phase (measured; booked on 3: limit in A)" in words, words
    assert words <= {"1-phase (measured; booked on 3: limit in A)", "3-phase (configured)"}
    assert all(r.phases == 0 for r in d.inputs.sessions)
    assert all(r.min_power_kw == pytest.approx(4.14) for r in d.inputs.sessions)


def test_sems_status_shows_each_sessions_phase_count():
    from agent.api.context import ConnectorView, StationView, as_dict
    from agent.cli.commands.status import render

    def conn(idx: int, sid: str | None, phases: str | None) -> ConnectorView:
        return ConnectorView(charger_id="CP1", idx=idx, state="C" if sid else "A",
                             session_id=sid, limit_kw=3.4, power_kw=3.4, binding=None,
                             phases=phases)  # fmt: skip

    view = as_dict(StationView(
        station_id="T1", ts="2026-06-17T20:07:12+00:00", grid_capacity_kw=40.0,
        grid_power_kw=10.0, base_load_kw=3.0, pv_power_kw=0.0, battery_soc=None,
        battery_power_kw=None, ev_power_kw=6.8, cycles=10,
        connectors=(conn(1, "aaaaaaaa-1", "1-phase (measured)"),
                    conn(2, "bbbbbbbb-2", "3-phase (configured)"), conn(3, None, None))))
    lines = render(view).splitlines()
    header = next(ln for ln in lines if ln.startswith("connector"))
    rows = {ln.split()[0]: ln for ln in lines if ln.startswith("CP1#")}
    assert "phases" in header.split()
    assert "1-phase (measured)" in rows["CP1#1"]
    assert "3-phase (configured)" in rows["CP1#2"]
    # without sessions from hardware (API stations) the column is left out
    bare = as_dict(StationView(
        station_id="T1", ts="2026-06-17T20:07:12+00:00", grid_capacity_kw=40.0,
        grid_power_kw=10.0, base_load_kw=3.0, pv_power_kw=0.0, battery_soc=None,
        battery_power_kw=None, ev_power_kw=0.0, cycles=10, connectors=(conn(1, None, None),)))
    assert "phases" not in next(ln for ln in render(bare).splitlines()
                                if ln.startswith("connector")).split()


def test_the_count_a_session_was_measured_on_is_kept_for_it_alone():
    """What a 3-phase EV switched to one phase goes back on (agent/control/session_phases.py:
    booked on three again, not as an EV of unknown phases): only a measured count of the same
    session, never an assumed one or another session's."""
    learner = PhaseLearner()
    key = ("CP1", 1)
    learner.observe(key, "s1", None, 3)
    assert learner.measured(key, "s1") is None  # configured: nothing measured
    learner.observe(key, "s1", (0.0, 0.0, 0.0), 3)
    assert learner.measured(key, "s1") is None  # assumed 1 while it does not draw
    learner.observe(key, "s1", (6.0, 6.0, 6.0), 3)
    assert learner.measured(key, "s1") == 3
    assert learner.measured(key, "s2") is None
    learner.restart(key)
    assert learner.measured(key, "s1") is None
