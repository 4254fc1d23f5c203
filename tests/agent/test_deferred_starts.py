"""Starts a circuit's room would leave below the EVs' minimum (apply.py): started one by one in
arrival order instead, each whole, while the grid's headroom and every room above it last.
Each case computes its expectation by hand; together they pin every term of that rule (the
mutants of `make test-mutants`: docs/testing.md)."""

from __future__ import annotations

from agent.control.apply import Write, plan_writes

A, B, C = ("A", 1), ("B", 1), ("C", 1)


def plan(targets, current, *, import_kw=10.0, circuits=(), min_kw=None, drawing=None):
    return plan_writes(targets, current, drawing or {}, min_kw or {A: 6.0, B: 6.0}, {},
                       import_kw=import_kw, capacity_kw=100.0, margin_kw=0.0,
                       deadband_kw=0.1, circuits=circuits)  # fmt: skip


def test_the_first_start_takes_the_room_up_to_its_target_and_the_next_waits():
    # Room 12 for two starts of 7 (min 6.5): shared, 6.0 each (below the minimum). A starts
    # whole at its target 7; B would get 5, below its minimum, and waits.
    p = plan({A: 7.0, B: 7.0}, {A: 0.0, B: 0.0}, min_kw={A: 6.5, B: 6.5},
             circuits=[(frozenset({A, B}), 12.0)])
    assert p.writes == (Write("A", 1, 7.0, 0.0, "increase"),)
    assert p.held_back_kw == 7.0


def test_a_start_is_held_to_the_grids_headroom_left_by_the_ones_before_it():
    # Grid headroom 11 (import 89): shared, 5.5 each (below the minimum 6). A takes 10 of
    # it whole, B the 1 left (below its minimum): it waits.
    p = plan({A: 10.0, B: 10.0}, {A: 0.0, B: 0.0}, import_kw=89.0,
             circuits=[(frozenset({A, B}), 30.0)])
    assert p.writes == (Write("A", 1, 10.0, 0.0, "increase"),)


def test_a_start_counts_only_its_share_on_a_phase_room():
    # An EV of unknown phases counts 1/2 on this phase's room of 4 kW: A may take 8 kW.
    # C, elsewhere, is raised by 3 kW out of the grid's headroom; that is not on the room.
    p = plan({A: 10.0, B: 10.0, C: 8.0}, {A: 0.0, B: 0.0, C: 5.0}, drawing={C: 5.0},
             circuits=[({A: 0.5, B: 0.5}, 4.0)])
    assert set(p.writes) == {Write("C", 1, 8.0, 5.0, "increase"),
                             Write("A", 1, 8.0, 0.0, "increase")}


def test_a_start_exactly_at_its_minimum_starts():
    p = plan({A: 10.0, B: 10.0}, {A: 0.0, B: 0.0}, circuits=[(frozenset({A, B}), 6.0)])
    assert p.writes == (Write("A", 1, 6.0, 0.0, "increase"),)


def test_a_small_minimum_starts_below_one_kw():
    # Minimum 0.5 kW, room 0.8: shared 0.4 each, so A starts whole at 0.8.
    p = plan({A: 2.0, B: 2.0}, {A: 0.0, B: 0.0}, min_kw={A: 0.5, B: 0.5},
             circuits=[(frozenset({A, B}), 0.8)])
    assert p.writes == (Write("A", 1, 0.8, 0.0, "increase"),)


def test_a_connector_with_no_weight_on_a_room_is_neither_held_by_it_nor_started_from_it():
    # B (first to arrive) is listed on the room with weight 0 (none of its conductors on
    # this phase): the room neither shares B's increase nor defers its start. The grid's
    # headroom 8 for 20 asked leaves both starts below their minimum (4 of 10, min 6): B,
    # under no room of its own, waits; A, deferred by its room, starts whole at 8.
    p = plan({B: 10.0, A: 10.0}, {A: 0.0, B: 0.0}, import_kw=92.0,
             circuits=[({A: 1.0, B: 0.0}, 30.0)])
    assert p.writes == (Write("A", 1, 8.0, 0.0, "increase"),)
    # B running at 2 kW, raised to 8: the room (A's alone) does not cut B's share.
    p = plan({A: 4.0, B: 8.0}, {A: 2.0, B: 2.0}, drawing={A: 2.0, B: 2.0},
             circuits=[({A: 1.0, B: 0.0}, 1.0)])
    assert Write("B", 1, 8.0, 2.0, "increase") in p.writes
    assert Write("A", 1, 3.0, 2.0, "increase") in p.writes


def residues_plan(targets, current, *, import_kw, circuits=(), min_kw=None):
    """Due residues (agent/control/residues.py): every connector already charging is due."""
    return plan_writes(targets, current, dict(current), min_kw or {}, {}, import_kw=import_kw,
                       capacity_kw=100.0, margin_kw=0.0, deadband_kw=0.5, circuits=circuits,
                       due=frozenset(k for k, kw in current.items() if kw > 0.0))  # fmt: skip


def test_due_residues_short_of_the_headroom_are_granted_one_by_one_each_whole():
    # Headroom 0.5 for three residues of 0.25: shared, 1/6 kW each (under the deadband),
    # so one by one: A and B whole (0.25 + 0.25 fill it exactly), C waits.
    p = residues_plan({A: 10.25, B: 10.25, C: 10.25}, {A: 10.0, B: 10.0, C: 10.0},
                      import_kw=99.5)
    assert p.writes == (Write("A", 1, 10.25, 10.0, "increase"),
                        Write("B", 1, 10.25, 10.0, "increase"))


def test_a_start_that_does_not_fit_does_not_hold_back_a_residue_after_it():
    # B starts from 0 (min 6) under a room; A's residue is due. Headroom 0.5: B's start
    # does not fit, A's 0.25 does.
    p = residues_plan({B: 10.0, A: 10.25}, {A: 10.0, B: 0.0}, import_kw=99.5,
                      circuits=[(frozenset({B}), 30.0)], min_kw={B: 6.0})
    assert p.writes == (Write("A", 1, 10.25, 10.0, "increase"),)
