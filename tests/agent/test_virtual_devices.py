"""Virtual devices (agent/control/virtual.py): the chargers and grid meter of a station known
only through the local API, read by the control loop's real `Reader` into a snapshot, and
the session tracker's API sessions (ids the API gives, reports booked as they arrive, rows
of source 'api')."""

from __future__ import annotations

import asyncio

from agent.api.models import StationConfig
from agent.app.virtual_station import station_settings, template
from agent.control.devices import Reader
from agent.control.session_records import Session
from agent.control.sessions import SessionTracker
from agent.control.stats import CycleStats
from agent.control.virtual import VirtualDevices
from agent.model.clock import ManualClock, iso
from agent.store import connect

CONFIG = StationConfig(stationId="S1", gridCapacity=60.0, baseLoad=10.0,
                       chargers=[{"id": "DC1", "maxPower": 50.0, "connectors": 2}])  # fmt: skip


def devices(clock: ManualClock) -> VirtualDevices:
    return VirtualDevices(station_settings(template(CONFIG), CONFIG), clock)


def test_the_reader_sees_occupancy_reported_draw_within_the_limit_and_the_base_load():
    clock = ManualClock()
    dev = devices(clock)
    dc1 = dev.chargers["DC1"]
    dc1.plug(1, "s1", vehicle_max_kw=40.0, limit_kw=20.0)
    dc1.plug(2, "s2", vehicle_max_kw=40.0, limit_kw=15.0)
    dc1.report(1, 12.0, clock.monotonic())
    dc1.report(2, 30.0, clock.monotonic())  # above its limit: reported before it applied it
    reader = Reader(dev, clock, CycleStats())  # type: ignore[arg-type]
    asyncio.run(reader.read_all(clock.monotonic() + 0.1))
    snap = reader.snapshot(clock.monotonic())
    (ch,) = snap.chargers
    assert ch.reachable
    c1, c2 = ch.connectors
    assert (c1.state, c1.power_kw, c1.limit_kw, c1.transaction_id) == ("C", 12.0, 20.0, "s1")
    assert (c2.state, c2.power_kw, c2.limit_kw) == ("C", 15.0, 15.0)  # never above the limit
    assert c1.measured and c2.measured
    assert snap.grid_kw == 10.0 + 12.0 + 15.0  # base load + what the sessions draw
    dc1.unplug(2)
    asyncio.run(reader.read_all(clock.monotonic() + 0.1))
    snap = reader.snapshot(clock.monotonic())
    assert snap.chargers[0].connectors[1].state == "A" and snap.grid_kw == 22.0


def test_a_session_is_unmeasured_until_its_first_report_and_counts_energy_between_reports():
    clock = ManualClock()
    dc1 = devices(clock).chargers["DC1"]
    dc1.plug(1, "s1", vehicle_max_kw=40.0, limit_kw=30.0)
    first = dc1.reading().connectors[0]
    assert (first.power_kw, first.measured) == (0.0, False)  # no cap may be taken from it
    dc1.report(1, 20.0, clock.monotonic())
    clock.advance(360)
    assert dc1.report(1, 10.0, clock.monotonic()) == 2.0  # 20 kW for 6 min
    c = dc1.reading().connectors[0]
    assert (c.power_kw, c.session_energy_kwh, c.measured) == (10.0, 2.0, True)


def test_the_tracker_keeps_api_sessions_under_their_own_ids_and_source(tmp_path):
    clock = ManualClock()
    db = connect(tmp_path / "agent.db")
    tracker = SessionTracker(db, clock, source="api")
    s = Session(id="api-1", charger_id="DC1", connector_idx=1, started_at=iso(clock.now()),
                vehicle_max_kw=40.0)  # fmt: skip
    tracker.begin(s, kind="v2g", fleet_id="F", limit_kw=12.5)
    tracker.reported("api-1", 20.0, 0.0, limit_kw=12.5)
    tracker.reported("api-1", 20.0, 1.5, limit_kw=10.0)
    row = dict(next(db.query("SELECT * FROM sessions")))
    assert (row["id"], row["source"], row["kind"], row["fleet_id"]) == ("api-1", "api", "v2g", "F")
    assert (row["energy_kwh"], row["peak_kw"], row["limit_kw"]) == (1.5, 20.0, 10.0)
    tracker.stop("api-1", "api", latch=False)
    assert tracker.blocked == set()  # the integration says when the next session starts
    # A hardware station's tracker never adopts the row; an 'api' one resumes only active ones.
    assert SessionTracker(db, clock).active == {}
    assert SessionTracker(db, clock, source="api").active == {}


def test_two_active_rows_on_one_connector_the_later_is_stopped_at_resume(tmp_path):
    clock = ManualClock()
    db = connect(tmp_path / "agent.db")
    first = SessionTracker(db, clock, source="api")
    for sid in ("older", "later"):
        clock.advance(1)
        first.active.clear()  # as two agents' rows left behind for the same connector
        first.begin(Session(id=sid, charger_id="DC1", connector_idx=1,
                            started_at=iso(clock.now())))  # fmt: skip
    resumed = SessionTracker(db, clock, source="api")
    assert [s.id for s in resumed.active.values()] == ["older"]
    rows = {r["id"]: (r["status"], r["stop_reason"]) for r in db.query("SELECT * FROM sessions")}
    assert rows == {"older": ("active", None), "later": ("stopped", "connector_taken")}


def test_a_new_configuration_keeps_the_control_loop_and_serves_its_chargers(tmp_path):
    """POST /station/config on the API-only station: the same control loop object (the one
    the daemon runs) with a controller for the new chargers; the old sessions stopped, a new
    one on a new charger granted by that loop's cycles, within gridCapacity - baseLoad."""
    from agent.api.context import NewSession
    from agent.app.virtual_station import VirtualStation

    clock = ManualClock()
    st = VirtualStation(CONFIG, connect(tmp_path / "agent.db"), clock)
    loop = st.control
    old = st.create_session(NewSession("DC1", 1, 40.0)).session_id
    asyncio.run(st.cycle())
    bigger = StationConfig(stationId="S1", gridCapacity=80.0, baseLoad=10.0,
                           chargers=[{"id": "AC1", "maxPower": 22.0, "connectors": 1},
                                     {"id": "DC2", "maxPower": 150.0, "connectors": 2}])  # fmt: skip
    st.replace_station_config(bigger)
    assert st.control is loop and st.controller is loop.controller
    assert sorted(loop.controller.chargers) == ["AC1", "DC2"]
    assert sorted(loop.devices.chargers) == ["AC1", "DC2"]  # type: ignore[attr-defined]
    assert old not in {s.session_id for s in st.sessions()}
    a = st.create_session(NewSession("DC2", 1, 150.0)).session_id
    b = st.create_session(NewSession("DC2", 2, 150.0)).session_id
    for _ in range(4):
        asyncio.run(st.cycle())
        clock.advance(0.25)
        got = {s.session_id: s.allocated_kw for s in st.sessions()}
        assert sum(got.values()) <= 70.0 + 1e-6
    assert got == {a: 35.0, b: 35.0}  # the fair shares of 80 - 10 kW, on the new charger
