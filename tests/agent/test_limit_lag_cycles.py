"""A lowered limit frees power only once the charger can have followed (limit_lag.py).

Cycle by cycle with the injected clock (cycle_helpers: grid 100 kW, margin 2 kW, 0.25 s per
cycle, limit_follow_s 1.5 s by default). CP1's EV draws 30 kW of a 50 kW limit (ramping
up) when CP2 plugs in: CP1 is lowered to 25 kW. Counting CP1 at 25 kW at once would give
CP2 20 kW while CP1's charger may still let its EV go on to 50 kW: 118 kW on 100.
"""

from __future__ import annotations

import pytest
from cycle_helpers import Station, settings

CP1_1, CP2_1 = ("CP1", 1), ("CP2", 1)


def lowered_station(**control) -> tuple[Station, float]:
    """CP1 just lowered 50 -> 25 kW while drawing `draw`; returns (station, time lowered)."""
    st = Station(cfg=settings(control=control), base_kw=48.0)
    st.plug(CP1_1, draw=30.0)
    st.limits[CP1_1] = 50.0  # held from before (the EV ramps up towards it)
    st.cycle()  # learns the limit in force; nothing to change (target 50)
    assert st.limits[CP1_1] == 50.0
    st.plug(CP2_1)
    d = st.cycle()
    assert [(w.charger_id, w.kw, w.reason) for w in d.plan.writes] == [("CP1", 25.0, "decrease")]
    return st, st.clock.monotonic()


def cp2_increase(d) -> float | None:
    return next((w.kw for w in d.plan.writes if (w.charger_id, w.idx) == CP2_1), None)


def worst_import(st: Station) -> float:
    """Import if every EV took all its limit allows (or the old one, if not followed yet)."""
    return st.base_kw + max(st.draw[CP1_1], 50.0) + st.limits[CP2_1]


def test_increase_of_another_connector_waits_for_the_follow_time():
    st, lowered_at = lowered_station()
    # CP1's draw stays at 30 (above its new 25 kW): the charger has not followed yet.
    while True:
        d = st.cycle()
        if cp2_increase(d) is not None:
            break
        assert st.clock.monotonic() - lowered_at < 1.5
        assert d.plan.held_back_kw == pytest.approx(25.0)
    # Granted at the first cycle at or after lowered + 1.5 s, out of 98 - 48 - 30 = 20 kW.
    assert st.clock.monotonic() - lowered_at == pytest.approx(1.5)
    assert cp2_increase(d) == pytest.approx(20.0)


def test_increase_goes_out_once_the_draw_has_come_down():
    st, lowered_at = lowered_station()
    assert cp2_increase(st.cycle()) is None
    st.draw[CP1_1] = 25.0  # the charger applied the new limit: its EV is down to it
    d = st.cycle()
    assert st.clock.monotonic() - lowered_at == pytest.approx(0.5)  # well before 1.5 s
    assert cp2_increase(d) == pytest.approx(25.0)  # 98 - 48 - 25
    assert worst_import(st) - 50.0 + 25.0 <= 98.0 + 1e-9  # CP1 can no longer go above 25


def test_a_draw_already_below_the_new_limit_proves_nothing():
    # (No consumption cap in this test: it would lower CP1 once more and restart the wait.)
    st = Station(cfg=settings(control={"cap_after_s": 60.0}), base_kw=48.0)
    st.plug(CP1_1, draw=10.0)  # an EV slow to start, far below the limit it holds
    st.limits[CP1_1] = 50.0
    st.cycle()
    st.plug(CP2_1)
    st.cycle()  # CP1 50 -> 25; its draw (10) is below 25 already
    lowered_at = st.clock.monotonic()
    held = 0
    while cp2_increase(d := st.cycle()) is None:
        held += 1
        assert held < 20
    # Released by time only: until then CP1's EV could still ramp to 50 kW.
    assert st.clock.monotonic() - lowered_at == pytest.approx(1.5)
    assert cp2_increase(d) == pytest.approx(25.0)


def test_without_a_follow_time_the_freed_power_is_handed_on_at_once():
    # limit_follow_s = 0 is the old rule: this is the overshoot the follow time prevents.
    st, lowered_at = lowered_station(limit_follow_s=0.0)
    d = st.cycle()
    assert cp2_increase(d) == pytest.approx(20.0)
    assert worst_import(st) == pytest.approx(118.0)  # 48 + 50 (not followed yet) + 20


def test_follow_time_is_a_config_field_with_a_default():
    assert settings().control.limit_follow_s == 1.5
    with pytest.raises(ValueError, match="limit_follow_s"):
        settings(control={"limit_follow_s": -1.0})


def test_a_vacant_connector_frees_its_power_once_its_charger_can_have_applied_the_decrease():
    st, _ = lowered_station()
    st.unplug(CP1_1)  # no EV now, but one plugged in before the charger applied 25 kW draws
    # up to 50: handing the difference to CP2 at once went over capacity (test_agent_sim).
    # Nor does the draw of 0 kW show that CP1 followed: its EV left.
    d = st.cycle()
    assert [(w.charger_id, w.idx, w.kw) for w in d.plan.writes] == [("CP1", 1, 0.0)]
    closed_at = st.clock.monotonic()  # a second decrease: the wait runs from it
    while True:
        d = st.cycle()
        if cp2_increase(d) is not None:
            break
        assert st.clock.monotonic() - closed_at < 1.5
    assert st.clock.monotonic() - closed_at == pytest.approx(1.5)
    assert cp2_increase(d) == pytest.approx(50.0)  # 98 - 48: CP1 vacant at 0 kW after it


def test_an_ev_plugged_into_a_just_lowered_connector_counts_at_its_old_limit():
    st = Station(base_kw=48.0)
    st.plug(CP2_1, draw=0.0)
    st.limits[CP1_1] = 50.0  # CP1 vacant, still at its power-on limit: lowered to 0
    d = st.cycle()
    assert ("CP1", 1, 0.0, "decrease") in [(w.charger_id, w.idx, w.kw, w.reason) for w in d.plan.writes]
    lowered_at = st.clock.monotonic()
    st.plug(CP1_1, draw=0.0)  # an EV arrives before CP1's charger can have applied 0 kW
    d = st.cycle()
    # CP1 may still let it take 50 kW: 98 - 48 - 50 leaves nothing for anyone yet.
    assert d.plan.writes == () and d.plan.headroom_kw == 0.0
    assert st.clock.monotonic() - lowered_at < 1.5
