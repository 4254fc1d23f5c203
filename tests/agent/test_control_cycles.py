"""The control loop cycle by cycle: snapshots in, writes out (no hardware, no sleeping).

Station (cycle_helpers): grid 100 kW, margin 2 kW, CP1 50 kW x 2 connectors, CP2 50 kW x 1,
base load 30 kW unless a test says otherwise.
"""

from __future__ import annotations

import pytest
from cycle_helpers import Station, settings

from agent.model.snapshot import BatteryState

CP1_1, CP1_2, CP2_1 = ("CP1", 1), ("CP1", 2), ("CP2", 1)


def writes(d):
    return [(w.charger_id, w.idx, w.kw, w.reason) for w in d.plan.writes]


def test_new_ev_ramps_up_out_of_confirmed_headroom():
    st = Station(base_kw=60.0)
    st.plug(CP1_1, draw=0.0)
    d = st.cycle(follow=True)
    # 98 - 60 = 38 kW for one EV: the headroom the meter confirms (38) covers it.
    assert writes(d) == [("CP1", 1, 38.0, "increase")]
    st.plug(CP2_1)
    d = st.cycle(follow=True)
    # Fair share 19/19: the decrease goes first; the newcomer only gets what the meter
    # shows free now (98 - 98 = 0), so nothing yet: no overshoot while CP1 slows down.
    assert writes(d) == [("CP1", 1, 19.0, "decrease")]
    d = st.cycle(follow=True)
    assert writes(d) == [("CP2", 1, 19.0, "increase")]  # within 2 cycles of plugging in
    assert st.snapshot().grid_kw == pytest.approx(98.0)


def test_headroom_is_shared_and_grid_never_overshoots():
    st = Station(base_kw=60.0)
    st.plug(CP1_1, draw=30.0)
    st.limits[CP1_1] = 30.0  # the charger already holds 30 kW (e.g. after a restart)
    st.plug(CP2_1)
    d = st.cycle()
    # Targets 19/19: 30->19 first; CP2 wants 19 but the meter shows 8 kW free.
    assert writes(d) == [("CP1", 1, 19.0, "decrease"), ("CP2", 1, 8.0, "increase")]
    assert d.plan.held_back_kw == pytest.approx(11.0)
    for _ in range(5):
        st.cycle(follow=True)
        assert st.snapshot().grid_kw <= 100.0
    assert (st.limits[CP1_1], st.limits[CP2_1]) == (19.0, 19.0)


def test_deadband_and_refresh_by_heartbeat():
    st = Station(base_kw=30.0)
    st.plug(CP1_1)
    st.cycle(follow=True)
    assert st.limits[CP1_1] == 50.0
    st.base_kw = 68.3  # budget 29.7: a change of 20.3 is written
    assert writes(st.cycle(follow=True)) == [("CP1", 1, 29.7, "decrease")]
    st.base_kw = 68.0  # +0.3 kW: under the 0.5 kW deadband, not written
    d = st.cycle(follow=True)
    assert writes(d) == [] and d.targets[CP1_1] == pytest.approx(30.0)
    # No write to a charger for 4 s (0.4 x comm timeout 10 s): a heartbeat keeps it alive.
    beats = [st.cycle(advance=0.25).heartbeats for _ in range(20)]
    assert [i for i, b in enumerate(beats) if "CP1" in b] == [14]  # 15 x 0.25 s after its write
    cp2 = [i for i, b in enumerate(beats) if "CP2" in b]
    assert cp2 and all(b - a == 16 for a, b in zip(cp2, cp2[1:], strict=False))


def test_measured_consumption_cap_frees_power_and_lifts():
    st = Station(base_kw=48.0)  # 50 kW for EVs
    st.plug(CP1_1)
    st.plug(CP2_1)
    st.cycle(follow=True)
    st.cycle(follow=True)
    assert (st.limits[CP1_1], st.limits[CP2_1]) == (25.0, 25.0)
    st.draw[CP1_1] = 10.0  # this EV only takes 10 kW
    for _ in range(3):  # not capped before cap_after_s = 1 s
        d = st.cycle()
        assert d.caps == {}
    for _ in range(3):  # capped once it has drawn below its limit for 1 s
        d = st.cycle()
        if d.caps:
            break
    sid = st.session_id(CP1_1)
    assert d.caps == {sid: 11.0}  # measured + max(1 kW, 10 %)
    assert writes(d) == [("CP1", 1, 11.0, "decrease")]
    lowered_at = st.clock.monotonic()
    # CP1's charger may not have applied 11 kW yet (its EV could still take up to 25): the
    # 14 kW it frees go to CP2 only after limit_follow_s (1.5 s), then as before.
    while st.clock.monotonic() - lowered_at < 1.5 - 1e-9:
        assert st.limits[CP2_1] == 25.0
        d = st.cycle()
        st.draw[CP2_1] = st.limits[CP2_1]
    assert st.clock.monotonic() - lowered_at == pytest.approx(1.5)
    assert (st.limits[CP1_1], st.limits[CP2_1]) == (11.0, 39.0)
    # It draws up to its cap again: the cap lifts and the next allocation is fair again.
    st.draw[CP1_1] = 11.0
    d = st.cycle()
    assert d.caps == {} and d.targets[CP1_1] == 25.0


def test_paused_sessions_rotate():
    st = Station(base_kw=91.0)  # 7 kW: one minimum (4.14 kW) fits, two do not
    st.plug(CP1_1)
    st.cycle(follow=True)
    st.plug(CP2_1)
    st.cycle(follow=True)
    first, second = st.session_id(CP1_1), st.session_id(CP2_1)
    runs = []
    for _ in range(100):  # 25 s, max_pause_s = 10 s
        d = st.cycle(follow=True)
        alloc = d.result["allocations"]
        runs.append(first if alloc[first] > 0 else second)
    # The latest arrival waits first; each waits at most 10 s (40 cycles) before it runs.
    assert runs[0] == first
    switches = [i for i in range(1, len(runs)) if runs[i] != runs[i - 1]]
    assert switches and switches[0] <= 41
    assert all(b - a <= 41 for a, b in zip(switches, switches[1:], strict=False))


def test_stale_grid_meter_uses_safe_budget():
    st = Station(base_kw=45.0)
    st.plug(CP1_1)
    st.cycle(follow=True)
    st.base_kw = 25.0
    st.cycle(follow=True)
    st.grid_stale = True
    d = st.cycle(follow=True)
    # Highest base load seen in the window (45) beats the pessimistic 20 kW; no PV counted.
    assert "grid_meter_stale" in d.budget.modes
    assert d.request["baseLoad"] == 45.0 and d.request["pvPower"] == 0.0
    assert d.targets[CP1_1] == 50.0  # 98 - 45 = 53, bounded by the charger's 50 kW
    # Safe-budget headroom: no increase beyond 98 - (45 + what the EVs draw now).
    assert all(w.kw <= 53.0 for w in d.plan.writes)


def test_unreachable_charger_counts_as_its_last_limit():
    st = Station(base_kw=30.0)
    st.plug(CP1_1)
    st.plug(CP2_1)
    for _ in range(3):
        st.cycle(follow=True)
    assert (st.limits[CP1_1], st.limits[CP2_1]) == (34.0, 34.0)
    st.unreachable.add("CP2")
    d = st.cycle(follow=True)
    assert d.budget.modes == {"charger_unreachable:CP2"}
    assert d.budget.reserved_kw == 34.0
    assert d.request["baseLoad"] == 64.0  # 30 measured + 34 reserved
    assert all(w.charger_id == "CP1" for w in d.plan.writes)
    assert len(st.controller.sessions.active) == 2  # not ended for going silent
    assert d.targets == {CP1_1: 34.0, CP1_2: 0.0}


def test_stale_bms_counts_on_no_discharge():
    cfg = settings(
        station={
            "battery": {
                "inverter": "inv",
                "bms": "bms",
                "max_charge_kw": 50,
                "max_discharge_kw": 50,
                "min_soc": 10,
            }
        }  # fmt: skip
    )
    st = Station(cfg=cfg, base_kw=80.0)
    st.battery = BatteryState(soc=60.0, max_charge_kw=50.0, max_discharge_kw=30.0, power_kw=0.0)
    st.plug(CP1_1)
    d = st.cycle()
    assert d.request["battery"]["maxDischargePower"] == 30.0
    assert d.targets[CP1_1] == 48.0  # 18 from the grid + 30 from the battery
    assert d.battery_setpoint_kw == 30.0
    st.battery = None  # BMS stale
    d = st.cycle()
    assert "battery" not in d.request and d.budget.modes == {"bms_stale"}
    assert d.targets[CP1_1] == 18.0
    # The battery gives less only out of headroom the meter confirms (battery_order.py):
    # the played meter shows the import at 98 of 100 kW (margin 2), so it holds its 30 kW.
    assert d.battery_setpoint_kw in (None, 30.0)
    d = st.cycle(follow=True)
    assert st.controller.battery_setpoint == 30.0
    st.base_kw = 60.0  # the meter now shows 32 kW free: the battery winds down by that much
    d = st.cycle(follow=True)
    assert d.battery_setpoint_kw is not None and d.battery_setpoint_kw < 30.0


def test_session_ends_and_connector_is_closed():
    st = Station(base_kw=30.0)
    st.plug(CP1_1)
    st.cycle(follow=True)
    st.unplug(CP1_1)
    d = st.cycle()
    assert writes(d) == [("CP1", 1, 0.0, "decrease")]
    assert st.controller.sessions.active == {}
