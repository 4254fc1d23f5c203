"""A lowered limit frees a metered circuit's room only once the charger can have followed.

Cycle by cycle with the injected clock (cycle_helpers, 0.25 s per cycle, limit_follow_s
1.5 s). A metered 32 A sub-board (1 A margin, 4 A base on L1) feeds two 1-phase 7.4 kW
chargers, both on L1; the grid (200 kW) never binds. CP1's EV ramps up towards the limit it
holds when CP2's EV plugs in: CP1 is lowered to its share. Were the new limit believed at
once, CP2 would get the room it frees the next cycle while CP1's charger may still let its
EV go on up to the old limit: L1 would carry both (agent/control/limit_lag.py, issue 13).
"""

from __future__ import annotations

import pytest

from agent.config.settings import AgentSettings
from tests.agent.cycle_helpers import settings
from tests.agent.test_circuit_meters import SubBoard

VOLTS = 230.0
RATING_A, MARGIN_A = 32.0, 1.0
CP1, CP2 = ("CP1", 1), ("CP2", 1)


def one_phase_sub_board(**control) -> AgentSettings:
    s = settings(
        station={
            "grid_capacity_kw": 200.0,
            "circuits": [{"id": "sub", "max_current_a": RATING_A, "meter": "sub-meter"}],
            "chargers": [{"id": cid, "device": dev, "max_power_kw": 7.4, "connectors": 1,
                          "circuit": "sub", "phases": 1, "min_power_kw": 1.38}
                         for cid, dev in (("CP1", "cp1"), ("CP2", "cp2"))],
        },
        # No consumption cap: it would lower CP1 by itself while its EV ramps up.
        control={"cap_after_s": 60.0, **control},
    )  # fmt: skip
    devices = [d.model_dump() for d in s.devices] + [
        {"name": "sub-meter", "kind": "meter", "profile": "sim-meter",
         "endpoint": "tcp://127.0.0.1:7"},
    ]  # fmt: skip
    return AgentSettings(**{**s.model_dump(exclude={"devices"}), "devices": devices})


def worst_l1(st: SubBoard, old_cp1_kw: float) -> float:
    """L1 if every EV took all its limit allows (CP1 its old limit, not followed yet)."""
    cp1 = max(st.draw[CP1], old_cp1_kw)
    return st.sub_base_a[0] + (cp1 + st.limits[CP2]) * 1000 / VOLTS


def cp1_lowered(draw_kw: float, **control) -> tuple[SubBoard, float, float]:
    """CP1 holds the whole room and its EV draws `draw_kw` (ramping up) when CP2's EV plugs
    in; returns (station, CP1's old limit, when it was lowered)."""
    st = SubBoard(cfg=one_phase_sub_board(**control), base_kw=10.0)
    st.plug(CP1)
    for _ in range(8):  # CP1 alone gets the sub-board: 32 - 1 - 4 A on L1
        st.cycle()
    old = st.limits[CP1]
    assert old == pytest.approx((RATING_A - MARGIN_A - 4.0) * VOLTS / 1000, abs=0.05)
    st.draw[CP1] = draw_kw
    st.cycle()
    assert st.limits[CP1] == old and st.limits[CP2] == 0.0
    st.plug(CP2)
    d = st.cycle()
    writes = [(w.charger_id, w.reason) for w in d.plan.writes]
    assert writes == [("CP1", "decrease")], writes  # the room is CP1's old limit: none yet
    assert st.limits[CP1] < draw_kw + 1.0
    return st, old, st.clock.monotonic()


def test_room_freed_below_a_metered_circuit_waits_for_the_follow_time():
    # CP1's EV draws 3 kW, below its new limit: that proves nothing (it could still ramp up
    # to the old limit until the charger applies the new one), so only time releases it.
    st, old, lowered_at = cp1_lowered(3.0)
    while True:
        st.cycle()
        if st.limits[CP2] > 0.0:
            break
        assert st.clock.monotonic() - lowered_at < 1.5
        assert worst_l1(st, old) <= RATING_A - MARGIN_A + 1e-6
    # Granted at the first cycle at or after lowered + 1.5 s, out of the measured room.
    assert st.clock.monotonic() - lowered_at == pytest.approx(1.5)
    room = (RATING_A - MARGIN_A - max(st.sub_currents())) * VOLTS / 1000
    # (the allocator shares the rating less the margin too, its share rounded down to 10 W)
    assert st.limits[CP2] == pytest.approx(room - max(0.0, st.limits[CP1] - st.draw[CP1]),
                                           abs=0.02)  # fmt: skip
    assert worst_l1(st, st.limits[CP1]) <= RATING_A - MARGIN_A + 1e-6


def test_room_goes_out_once_the_lowered_ev_has_come_down():
    st, old, lowered_at = cp1_lowered(4.0)  # above its new limit when lowered
    new = st.limits[CP1]
    st.cycle()
    assert st.limits[CP2] == 0.0  # CP1 still draws 4 kW: not followed
    assert worst_l1(st, old) <= RATING_A - MARGIN_A + 1e-6
    st.draw[CP1] = new  # the charger applied the new limit: its EV is down to it
    st.cycle()
    assert st.clock.monotonic() - lowered_at == pytest.approx(0.5)  # well before 1.5 s
    assert st.limits[CP2] > 1.38  # started out of the room CP1 freed
    assert worst_l1(st, new) <= RATING_A - MARGIN_A + 1e-6


def test_without_a_follow_time_the_sub_board_would_carry_both():
    # limit_follow_s = 0 is the old rule: the overload the follow time prevents on L1.
    st, old, lowered_at = cp1_lowered(3.0, limit_follow_s=0.0)
    st.cycle()
    assert st.limits[CP2] > 1.38  # raised the cycle after CP1 was lowered
    assert worst_l1(st, old) > RATING_A + 5.0
