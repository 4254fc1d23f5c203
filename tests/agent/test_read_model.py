"""The one read model (agent/state/station_state.py): the local API's `DaemonContext` and the
uplink's `UplinkBridge` built with only a `StationState` and a command port, no control
loop anywhere, serve the cycle recorded into it.

The cycle is a real one (the controller's decision on a hand-made snapshot, cycle_helpers),
recorded by hand as the loop's record phase does; the controller then runs on, so a reader
that looked at the live tracker or limits instead of the recorded cycle would show the next
cycle's figures and fail here. (The import-linter contract "the API and the uplink read
the station's state, never the loop that records it" forbids the imports themselves.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cycle_helpers import Station

from agent.api.context import UnknownSession
from agent.api.daemon_context import DaemonContext
from agent.control.devices import DeviceStatus, StationDevices
from agent.control.sessions import Session, SessionTracker
from agent.control.stats import CycleStats
from agent.state.station_state import StationState
from agent.store.signals import Signals
from agent.store.signals import StationConfig as CloudStationConfig
from agent.uplink.bridge import UplinkBridge
from tests.uplink.helpers import open_uplink

CP1_1, CP1_2, CP2_1 = ("CP1", 1), ("CP1", 2), ("CP2", 1)


class TrackerCommands:
    """`StationCommands` over a session tracker: what the daemon's port does for a stop
    (agent/app/commands.py -> `ControlLoop.stop_session`), with no loop."""

    def __init__(self, tracker: SessionTracker, state: StationState) -> None:
        self.tracker = tracker
        self.state = state
        self.stopped: list[tuple[str, str]] = []

    def stop_session(self, session_id: str, reason: str) -> Session:
        s = self.tracker.stop(session_id, reason)
        self.state.session_stopped(session_id)
        self.stopped.append((session_id, reason))
        return s

    def reconfigure_now(self, config: CloudStationConfig) -> None:
        raise AssertionError("not asked here")

    async def reconfigure(self, config: CloudStationConfig) -> None:
        raise AssertionError("not asked here")


@pytest.fixture
def recorded(tmp_path: Path):
    """A station after two cycles with EVs on CP1/1 and CP2/1, recorded into a read model;
    then a third cycle the read model is not told of (CP2's EV leaves, CP1's draws more)."""
    st = Station()
    st.plug(CP1_1, draw=7.0)
    st.plug(CP2_1, draw=11.0)
    st.cycle()
    st.run_meters(60.0)  # a minute of charging: energy and cost on both sessions
    decision = st.cycle(follow=True)
    devices = StationDevices(st.cfg)
    state = StationState(st.cfg, CycleStats(), DeviceStatus(devices))
    ctl = st.controller
    state.record(decision, ctl.limits, ctl.sessions.active.values(), None)
    state.healthy = True
    recorded = {
        "limits": dict(ctl.limits),
        "sessions": {s.id: (s.charger_id, s.connector_idx, s.energy_kwh, s.power_kw)
                     for s in ctl.sessions.active.values()},
        "decision": decision,
    }  # fmt: skip
    # The station moves on; the read model still holds the recorded cycle.
    st.unplug(CP2_1)
    st.draw[CP1_1] = 3.0
    st.run_meters(60.0)
    st.cycle()
    assert len(ctl.sessions.active) == 1 and ctl.limits != recorded["limits"]
    return st, state, recorded


def test_the_local_api_serves_the_recorded_cycle_without_the_loop(recorded) -> None:
    st, state, rec = recorded
    commands = TrackerCommands(st.controller.sessions, state)
    ctx = DaemonContext(state, commands, st.db, st.clock, signals=Signals(st.db))
    d = rec["decision"]

    view = ctx.station_view()
    assert view.grid_power_kw == d.snapshot.grid_kw
    assert view.base_load_kw == round(d.budget.base_load_kw, 3)
    by_key = {(c.charger_id, c.idx): c for c in view.connectors}
    assert set(by_key) == {CP1_1, CP1_2, CP2_1}
    for key, c in by_key.items():
        assert c.limit_kw == round(rec["limits"][key] or 0.0, 3), key
    sessions_by_key = {(s.charger_id, s.connector_idx): s.id for s in d.sessions}
    assert by_key[CP2_1].session_id == sessions_by_key[CP2_1]  # the EV that left since

    listed = ctx.sessions()
    assert {s.session_id for s in listed} == set(rec["sessions"])
    for s in listed:
        cid, idx, energy, power = rec["sessions"][s.session_id]
        assert (s.charger_id, s.idx) == (cid, idx)
        assert s.energy_kwh == round(energy, 4) and s.consumed_kw == round(power, 3)
        assert s.allocated_kw == round(rec["limits"][(cid, idx)] or 0.0, 3)
        assert s.source == "hardware"
    assert sum(s.energy_kwh for s in listed) > 0

    deps = {x.name: x for x in ctx.dependencies()}
    assert deps["control"].state == "ok"
    assert deps["planner"].state == "disabled"
    assert deps["store"].state == "ok"
    # Nothing answers on the configured endpoints: every device offline, by its name.
    assert deps["devices"].state == "degraded"
    devices = ctx.devices()
    assert [x.name for x in devices] == [d.name for d in st.cfg.devices]
    assert {x.state for x in devices} == {"offline"}
    assert ctx.station_config().gridCapacity == st.cfg.station.grid_capacity_kw
    assert ctx.plan_view() is None and ctx.savings() is None

    # A stop goes through the command port and shows at once, before any cycle.
    cp1 = next(s.session_id for s in listed if (s.charger_id, s.idx) == CP1_1)
    ctx.stop_session(cp1)
    assert commands.stopped == [(cp1, "api")]
    assert cp1 not in {s.session_id for s in ctx.sessions()}
    with pytest.raises(UnknownSession):
        ctx.stop_session(cp1)
    with pytest.raises(UnknownSession):
        ctx.report_consumption(cp1, 1.0)


def test_the_uplink_reports_the_recorded_cycle_without_the_loop(recorded, tmp_path) -> None:
    st, state, rec = recorded
    uplink = open_uplink(tmp_path, 1)  # never connected: only its outbox is used
    try:
        bridge = UplinkBridge(uplink, state, st.db, now=st.clock.now)
        t = bridge.telemetry(state.telemetry())
        d = rec["decision"]
        assert t.grid.power_kw == d.snapshot.grid_kw
        sessions_by_key = {(s.charger_id, s.connector_idx): s.id for s in d.sessions}
        for c in t.connectors:
            key = (c.charger_id, c.idx)
            assert c.limit_kw == round(rec["limits"][key] or 0.0, 3), key
            assert c.session_id == sessions_by_key.get(key)

        updates = bridge.session_updates()
        assert {u.session_id for u in updates} == set(rec["sessions"])
        for u in updates:
            assert u.energy_kwh == round(rec["sessions"][u.session_id][2], 4)

        links = {x.id: x.link for x in bridge.device_health()}
        assert links == dict.fromkeys((d.name for d in st.cfg.devices), "offline")
        health = bridge.health("periodic")
        assert health.planner is not None and not health.planner.enabled
        assert health.degraded == sorted(d.budget.modes)
        assert bridge.signature() == (tuple(links.items()), tuple(sorted(d.budget.modes)),
                                      (), False)  # fmt: skip
    finally:
        uplink.outbox.conn.close()


def test_a_recorded_cycle_is_frozen(recorded) -> None:
    """What a reader holds does not change under it: the sessions are copies, the limits a
    read-only copy, and the cycle is replaced whole."""
    st, state, rec = recorded
    cycle = state.cycle
    with pytest.raises(TypeError):
        cycle.limits[CP1_1] = 0.0  # type: ignore[index]
    with pytest.raises(AttributeError):
        cycle.sessions[0].energy_kwh = 0.0  # type: ignore[misc]
    live = st.controller.sessions.active[CP1_1]
    recorded_cp1 = next(s for s in state.sessions if s.id == live.id)
    assert recorded_cp1.energy_kwh == rec["sessions"][live.id][2] != live.energy_kwh
    assert recorded_cp1.public().keys() == live.public().keys()
