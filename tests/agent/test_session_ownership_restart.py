"""No ghost sessions after a restart (issue 11): the session tracker resumes only the rows
it wrote, on connectors the station still has, and stops with a reason (and its stop event)
a resumed session whose connector is gone or reads vacant.

Real SQLite files, the real SessionTracker and VirtualStation: rows are written by the class
that writes them in the daemon, then a new tracker opens the same file, as after a restart.
"""

from __future__ import annotations

import json

from agent.api.context import NewSession
from agent.api.models import StationConfig
from agent.app.virtual_station import VirtualStation
from agent.control.sessions import SessionTracker
from agent.model.clock import ManualClock
from agent.model.snapshot import ChargerState, ConnectorState, Snapshot
from agent.store import connect


def snap(clock, chargers: dict[str, tuple[str, ...]], reachable=True, power=11.0, energy=1.0):
    """A snapshot with these chargers, each connector in the given IEC 61851 state."""
    return Snapshot(clock.monotonic(), clock.now(), 10.0, None, None, tuple(
        ChargerState(cid, reachable, tuple(
            ConnectorState(cid, i, st, power if st in "BCD" else 0.0, energy)
            for i, st in enumerate(states, 1)))
        for cid, states in chargers.items()))  # fmt: skip


def step(tracker, s):
    out = tracker.update(s)
    tracker.flush_writes(s.t)
    return out


def rows(db_path):
    return {r["id"]: (r["status"], r["stop_reason"], r["source"])
            for r in connect(db_path).query("SELECT * FROM sessions")}  # fmt: skip


def stop_events(db_path):
    return {r["session_id"]: json.loads(r["data"]).get("reason") for r in connect(db_path).query(
        "SELECT session_id, data FROM events WHERE kind = 'session_stopped'")}  # fmt: skip


def api_session(db_path, clock, charger_id="CP1", idx=1) -> str:
    """A session started through the local API of an API-only station, as the daemon runs it."""
    config = StationConfig(stationId="S1", gridCapacity=60.0, baseLoad=10.0,
                           chargers=[{"id": charger_id, "maxPower": 22.0, "connectors": 2}])  # fmt: skip
    station = VirtualStation(config, connect(db_path), clock)
    view = station.create_session(NewSession(charger_id, idx, 11.0))
    station.report_consumption(view.session_id, 11.0)
    return view.session_id


def test_api_station_rows_are_not_resumed_by_the_tracker(tmp_path):
    """The API-only station's loop has no chargers; before the fix its tracker resumed the
    API's row as its own active session (shown in status, sent to the cloud)."""
    db_path, clock = tmp_path / "agent.db", ManualClock()
    sid = api_session(db_path, clock)
    assert rows(db_path)[sid] == ("active", None, "api")

    tracker = SessionTracker(connect(db_path), clock)  # the restart
    assert tracker.active == {}
    assert step(tracker, snap(clock, {})) == []
    # Not the tracker's to close either: the row is left as the API station wrote it.
    assert rows(db_path)[sid] == ("active", None, "api")


def test_an_api_row_on_a_real_connector_is_not_adopted_by_the_ev_there(tmp_path):
    """The station was API-only, now has charger CP1 configured: the EV on CP1#1 gets a
    session of its own, not the API's id (before the fix it took over the API's row)."""
    db_path, clock = tmp_path / "agent.db", ManualClock()
    api_sid = api_session(db_path, clock, "CP1", 1)
    events = []
    tracker = SessionTracker(connect(db_path), clock, lambda k, p: events.append((k, p["id"])))
    (s,) = step(tracker, snap(clock, {"CP1": ("C", "A")}))
    assert s.id != api_sid
    assert events == [("session_started", s.id)]
    assert rows(db_path)[s.id] == ("active", None, "hardware")
    # Unplugging stops the tracker's own session, and only that one.
    clock.advance(1)
    assert step(tracker, snap(clock, {"CP1": ("A", "A")})) == []
    assert rows(db_path)[s.id] == ("stopped", "unplugged", "hardware")
    assert rows(db_path)[api_sid][0] == "active"


def test_a_session_on_a_charger_no_longer_configured_is_stopped_with_its_event(tmp_path):
    db_path, clock = tmp_path / "agent.db", ManualClock()
    first = SessionTracker(connect(db_path), clock)
    (old,) = step(first, snap(clock, {"OLD": ("C",)}))
    first.flush()  # a clean shutdown; the config then loses charger OLD

    clock.advance(60)
    events = []
    tracker = SessionTracker(connect(db_path), clock, lambda k, p: events.append((k, p)))
    assert [s.id for s in tracker.active.values()] == [old.id]  # resumed, not yet judged
    assert step(tracker, snap(clock, {"CP1": ("A", "A")})) == []
    assert rows(db_path)[old.id] == ("stopped", "charger_removed", "hardware")
    assert [(k, p["id"], p["reason"]) for k, p in events] == [
        ("session_stopped", old.id, "charger_removed")]
    assert stop_events(db_path)[old.id] == "charger_removed"
    # Gone for good: the next restart resumes nothing.
    assert SessionTracker(connect(db_path), clock).active == {}


def test_a_session_on_a_connector_no_longer_configured_is_stopped(tmp_path):
    db_path, clock = tmp_path / "agent.db", ManualClock()
    first = SessionTracker(connect(db_path), clock)
    (old,) = step(first, snap(clock, {"CP1": ("A", "C")}))
    assert old.connector_idx == 2
    tracker = SessionTracker(connect(db_path), clock)  # CP1 now configured with 1 connector
    assert step(tracker, snap(clock, {"CP1": ("A",)})) == []
    assert rows(db_path)[old.id] == ("stopped", "connector_removed", "hardware")


def test_a_charger_removed_while_running_stops_its_session(tmp_path):
    """The same rule every cycle: a reconfiguration that drops a charger leaves no ghost."""
    db_path, clock = tmp_path / "agent.db", ManualClock()
    tracker = SessionTracker(connect(db_path), clock)
    a, b = step(tracker, snap(clock, {"CP1": ("C",), "CP2": ("C",)}))
    clock.advance(1)
    (kept,) = step(tracker, snap(clock, {"CP1": ("C",)}))
    assert kept.id == a.id
    assert rows(db_path)[b.id] == ("stopped", "charger_removed", "hardware")


def test_a_connector_vacant_on_the_first_reading_after_restart_is_stopped(tmp_path):
    """The EV left while the agent was down: stopped at the first fresh reading, with a
    reason saying so; an unreachable charger first changes nothing (no evidence)."""
    db_path, clock = tmp_path / "agent.db", ManualClock()
    first = SessionTracker(connect(db_path), clock)
    s1, s2 = step(first, snap(clock, {"CP1": ("C", "C")}))  # then kill -9: no flush

    clock.advance(300)
    events = []
    tracker = SessionTracker(connect(db_path), clock, lambda k, p: events.append((k, p)))
    assert {s.id for s in tracker.active.values()} == {s1.id, s2.id}
    # First cycles: the charger does not answer yet; both sessions are kept.
    assert len(step(tracker, snap(clock, {"CP1": ("?", "?")}, reachable=False))) == 2
    clock.advance(1)
    # First fresh reading: #1 vacant (the EV left meanwhile), #2 still charging.
    (still,) = step(tracker, snap(clock, {"CP1": ("A", "C")}, energy=2.0))
    assert still.id == s2.id
    assert rows(db_path)[s1.id] == ("stopped", "agent_restart_vacant", "hardware")
    assert [(k, p["id"], p["reason"]) for k, p in events] == [
        ("session_stopped", s1.id, "agent_restart_vacant")]
    # After that first reading, unplugging is an ordinary unplug.
    clock.advance(1)
    assert step(tracker, snap(clock, {"CP1": ("A", "A")})) == []
    assert rows(db_path)[s2.id] == ("stopped", "unplugged", "hardware")


def test_a_latch_left_by_an_api_row_does_not_block_a_connector(tmp_path):
    """Only the tracker's own stopped rows carry a latch it honours."""
    db_path, clock = tmp_path / "agent.db", ManualClock()
    sid = api_session(db_path, clock)
    connect(db_path).execute("UPDATE sessions SET status = 'stopped', latched = 1 WHERE id = ?",
                             [sid])  # fmt: skip
    tracker = SessionTracker(connect(db_path), clock)
    assert tracker.blocked == set()
    (s,) = step(tracker, snap(clock, {"CP1": ("C", "A")}))
    assert s.charger_id == "CP1"
