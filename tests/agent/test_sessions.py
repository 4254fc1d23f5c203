"""Sessions from connector states: start on B/C, end on A, resume after a restart."""

from __future__ import annotations

from agent.control.sessions import SessionTracker
from agent.model.clock import ManualClock
from agent.model.snapshot import ChargerState, ConnectorState, Snapshot
from agent.store import connect


def snap(clock, state, power=0.0, energy=0.0, reachable=True):
    c = ConnectorState("CP1", 1, state, power, energy)
    return Snapshot(clock.monotonic(), clock.now(), 10.0, None, None,
                    (ChargerState("CP1", reachable, (c,)),))  # fmt: skip


def test_lifecycle_and_resume_after_restart(tmp_path):
    db_path = tmp_path / "agent.db"
    clock = ManualClock()
    events = []
    t = SessionTracker(connect(db_path), clock, lambda k, p: events.append((k, p["id"])))
    assert t.update(snap(clock, "A")) == []
    clock.advance(1)
    (s,) = t.update(snap(clock, "B"))
    clock.advance(1)
    t.update(snap(clock, "C", power=50.0, energy=2.0))
    clock.advance(10)
    t.update(snap(clock, "C", power=40.0, energy=3.5))  # persisted (5 s elapsed)
    # The agent restarts: same session id and energy; the counter keeps counting.
    clock.advance(1)
    t2 = SessionTracker(connect(db_path), clock)
    assert [x.id for x in t2.active.values()] == [s.id]
    (s2,) = t2.update(snap(clock, "C", power=45.0, energy=4.0))
    assert (s2.id, s2.energy_kwh, s2.peak_kw) == (s.id, 4.0, 50.0)
    # Unreachable charger: no stop. E (error): no stop either.
    t2.update(snap(clock, "A", reachable=False))
    t2.update(snap(clock, "E"))
    assert len(t2.active) == 1
    clock.advance(1)
    assert t2.update(snap(clock, "A")) == []
    row = connect(db_path)["sessions"].get(s.id)
    assert (row["status"], row["energy_kwh"], row["peak_kw"]) == ("stopped", 4.0, 50.0)
    assert events == [("session_started", s.id)]
    kinds = [r["kind"] for r in connect(db_path).query("SELECT kind FROM events ORDER BY id")]
    assert kinds == ["session_started", "session_stopped"]


def test_counter_left_over_and_counter_reset():
    clock = ManualClock()
    t = SessionTracker(connect(":memory:"), clock)
    # The charger still shows the previous session's 12 kWh when the EV plugs in.
    (s,) = t.update(snap(clock, "B", energy=12.0))
    assert s.energy_kwh == 0.0
    t.update(snap(clock, "C", energy=0.5))  # counter restarted for the new session
    t.update(snap(clock, "C", energy=3.0))
    t.update(snap(clock, "C", energy=1.0))  # charger rebooted mid-session: counted on top
    assert s.energy_kwh == 4.0


def test_a_resumed_session_is_saved_periodically_like_a_new_one(tmp_path):
    db_path = tmp_path / "agent.db"
    clock = ManualClock()
    t = SessionTracker(connect(db_path), clock)
    t.update(snap(clock, "C", power=50.0, energy=1.0))
    clock.advance(6)
    (s,) = t.update(snap(clock, "C", power=50.0, energy=2.0))  # saved: 2 kWh
    # kill -9: no flush. The new agent resumes the session and charging goes on.
    t2 = SessionTracker(connect(db_path), clock)
    for kwh in (3.0, 4.0, 5.0, 6.0):
        clock.advance(2)
        t2.update(snap(clock, "C", power=50.0, energy=kwh))
    # 6 s after its first cycle the resumed session's row was written again, unflushed.
    assert connect(db_path)["sessions"].get(s.id)["energy_kwh"] >= 5.0
