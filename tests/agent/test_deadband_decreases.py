"""A decrease under `control.deadband_kw` is still written when the limits in force need it.

Cycle by cycle (cycle_helpers: grid 100 kW, margin 2 kW, CP1 2 connectors, CP2 1). Three EVs
take all they are given; the base load then rises by 1.2 kW, so each target drops by 0.4 kW,
under the 0.5 kW deadband. Skipping all three would leave the limits in force 1.2 kW above
what the grid leaves them: the decreases needed are written (apply.py), largest first.
"""

from __future__ import annotations

import pytest
from cycle_helpers import Station

from agent.control.apply import Write, plan_writes

CP1_1, CP1_2, CP2_1 = ("CP1", 1), ("CP1", 2), ("CP2", 1)
KEYS = (CP1_1, CP1_2, CP2_1)


def test_sub_deadband_decreases_are_written_when_the_grid_needs_them():
    st = Station(base_kw=38.0)  # 60 kW for three EVs: 20 each
    for key in KEYS:
        st.plug(key)
    for _ in range(6):
        st.cycle(follow=True)
    assert [st.limits[k] for k in KEYS] == pytest.approx([20.0] * 3)
    st.base_kw = 39.2  # 58.8 kW left: 19.6 each, 0.4 kW lower
    for _ in range(3):
        st.cycle(follow=True)
        # The promise: base load plus every limit in force within capacity less margin.
        assert st.base_kw + sum(st.limits[k] for k in KEYS) <= 98.0 + 1e-6


def test_sub_deadband_decrease_is_skipped_while_the_limits_fit():
    current = {CP1_1: 20.0, CP1_2: 20.0, CP2_1: 20.0}
    targets = {CP1_1: 19.8, CP1_2: 19.6, CP2_1: 19.7}
    # Import 97.9 with every EV drawing its limit: the limits in force fit 98 kW.
    plan = plan_writes(targets, current, dict(current), {}, {}, import_kw=97.9,
                       capacity_kw=100.0, margin_kw=2.0, deadband_kw=0.5)  # fmt: skip
    assert plan.writes == ()


def test_largest_sub_deadband_decreases_first_until_the_deficit_is_covered():
    current = {CP1_1: 20.0, CP1_2: 20.0, CP2_1: 20.0}
    targets = {CP1_1: 19.8, CP1_2: 19.6, CP2_1: 19.7}
    plan = plan_writes(targets, current, dict(current), {}, {}, import_kw=98.5,
                       capacity_kw=100.0, margin_kw=2.0, deadband_kw=0.5)  # fmt: skip
    # 0.5 kW over: 0.4 (CP1/2) then 0.3 (CP2/1) cover it; CP1/1's 0.2 is not needed.
    assert [(w.charger_id, w.idx, w.kw) for w in plan.writes] == [
        ("CP1", 2, 19.6), ("CP2", 1, 19.7)]


def test_under_a_circuit_every_decrease_is_written():
    current = {CP1_1: 3.6, CP1_2: 3.6, CP2_1: 20.0}
    targets = {CP1_1: 3.4, CP1_2: 3.4, CP2_1: 19.9}
    plan = plan_writes(targets, current, dict(current), {}, {}, import_kw=50.0,
                       capacity_kw=100.0, margin_kw=2.0, deadband_kw=0.5,
                       exact_keys=frozenset({CP1_1, CP1_2}))  # fmt: skip
    # The grid has room, so CP2's 0.1 kW is skipped; the circuit's rating is not measured.
    assert [(w.charger_id, w.idx, w.kw) for w in plan.writes] == [
        ("CP1", 1, 3.4), ("CP1", 2, 3.4)]


def small_plan(targets, current, import_kw):
    return plan_writes(targets, current, dict(current), {}, {}, import_kw=import_kw,
                       capacity_kw=100.0, margin_kw=2.0, deadband_kw=0.5)  # fmt: skip


def test_what_the_larger_decreases_free_counts_before_the_small_ones():
    current = {CP1_1: 20.0, CP1_2: 20.0, CP2_1: 20.0}
    targets = {CP1_1: 15.0, CP1_2: 19.7, CP2_1: 19.6}
    # 5.3 kW over; CP1/1's decrease frees 5, so 0.3 is left: CP2/1's 0.4 covers it.
    plan = small_plan(targets, current, import_kw=103.3)
    assert plan.writes == (Write("CP1", 1, 15.0, 20.0, "decrease"),
                           Write("CP2", 1, 19.6, 20.0, "decrease"))


def test_a_small_v2g_deepening_counts_by_what_it_lowers_the_import():
    # CP1/1 discharges 0.2 kW deeper (from 0: its limit in force), CP2/1 is lowered 0.3 kW.
    current = {CP1_1: 0.0, CP2_1: 10.0}
    plan = small_plan({CP1_1: -0.2, CP2_1: 9.7}, current, import_kw=98.25)
    # 0.25 kW over: the larger, CP2/1's 0.3, covers it alone.
    assert plan.writes == (Write("CP2", 1, 9.7, 10.0, "decrease"),)
    # 0.6 kW over: a deepening of 0.4 first, then 0.2 is still missing: both.
    plan = small_plan({CP1_1: -0.4, CP2_1: 9.7}, current, import_kw=98.6)
    assert plan.writes == (Write("CP1", 1, -0.4, 0.0, "decrease"),
                           Write("CP2", 1, 9.7, 10.0, "decrease"))
