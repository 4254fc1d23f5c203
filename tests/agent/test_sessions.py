"""Sessions from connector states: start on B/C, end on A, resume after a restart."""

from __future__ import annotations

from agent.control.sessions import SessionTracker
from agent.model.clock import ManualClock
from agent.model.snapshot import ChargerState, ConnectorState, Snapshot
from agent.store import connect


def step(tracker, s):
    """One cycle of the tracker: update, then the store writes the controller's commit runs."""
    out = tracker.update(s)
    tracker.flush_writes(s.t)
    return out


def snap(clock, state, power=0.0, energy=0.0, reachable=True):
    c = ConnectorState("CP1", 1, state, power, energy)
    return Snapshot(clock.monotonic(), clock.now(), 10.0, None, None,
                    (ChargerState("CP1", reachable, (c,)),))  # fmt: skip


def test_lifecycle_and_resume_after_restart(tmp_path):
    db_path = tmp_path / "agent.db"
    clock = ManualClock()
    events = []
    t = SessionTracker(connect(db_path), clock, lambda k, p: events.append((k, p["id"])))
    assert step(t, snap(clock, "A")) == []
    clock.advance(1)
    (s,) = step(t, snap(clock, "B"))
    clock.advance(1)
    step(t, snap(clock, "C", power=50.0, energy=2.0))
    clock.advance(10)
    step(t, snap(clock, "C", power=40.0, energy=3.5))  # persisted (5 s elapsed)
    # The agent restarts: same session id and energy; the counter keeps counting.
    clock.advance(1)
    t2 = SessionTracker(connect(db_path), clock)
    assert [x.id for x in t2.active.values()] == [s.id]
    (s2,) = step(t2, snap(clock, "C", power=45.0, energy=4.0))
    assert (s2.id, s2.energy_kwh, s2.peak_kw) == (s.id, 4.0, 50.0)
    # Unreachable charger: no stop. E (error): no stop either.
    step(t2, snap(clock, "A", reachable=False))
    step(t2, snap(clock, "E"))
    assert len(t2.active) == 1
    clock.advance(1)
    assert step(t2, snap(clock, "A")) == []
    row = connect(db_path)["sessions"].get(s.id)
    assert (row["status"], row["energy_kwh"], row["peak_kw"]) == ("stopped", 4.0, 50.0)
    assert events == [("session_started", s.id)]
    kinds = [r["kind"] for r in connect(db_path).query("SELECT kind FROM events ORDER BY id")]
    assert kinds == ["session_started", "session_stopped"]


def test_counter_left_over_and_counter_reset():
    clock = ManualClock()
    t = SessionTracker(connect(":memory:"), clock)
    # The charger still shows the previous session's 12 kWh when the EV plugs in.
    (s,) = step(t, snap(clock, "B", energy=12.0))
    assert s.energy_kwh == 0.0
    step(t, snap(clock, "C", energy=0.5))  # counter restarted for the new session
    step(t, snap(clock, "C", energy=3.0))
    step(t, snap(clock, "C", energy=1.0))  # charger rebooted mid-session: counted on top
    assert s.energy_kwh == 4.0


def test_a_resumed_session_is_saved_periodically_like_a_new_one(tmp_path):
    db_path = tmp_path / "agent.db"
    clock = ManualClock()
    t = SessionTracker(connect(db_path), clock)
    t.update(snap(clock, "C", power=50.0, energy=1.0))
    clock.advance(6)
    (s,) = t.update(snap(clock, "C", power=50.0, energy=2.0))  # saved: 2 kWh
    t.flush_writes(clock.monotonic())
    # kill -9: no flush. The new agent resumes the session and charging goes on.
    t2 = SessionTracker(connect(db_path), clock)
    for kwh in (3.0, 4.0, 5.0, 6.0):
        clock.advance(2)
        t2.update(snap(clock, "C", power=50.0, energy=kwh))
        t2.flush_writes(clock.monotonic())
    # 6 s after its first cycle the resumed session's row was written again, unflushed.
    assert connect(db_path)["sessions"].get(s.id)["energy_kwh"] >= 5.0


def test_update_queues_its_writes_until_flushed(tmp_path):
    """The controller's decide calls update(): no SQL there, the rows land at the flush
    the cycle runs after its limit writes."""
    db = connect(tmp_path / "s.db")
    clock = ManualClock()
    t = SessionTracker(db, clock)
    (s,) = t.update(snap(clock, "B"))
    assert db.execute("SELECT count(*) FROM sessions").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 0
    t.flush_writes(clock.monotonic())
    assert db.execute("SELECT id, status FROM sessions").fetchall() == [(s.id, "active")]
    assert db.execute("SELECT kind FROM events").fetchall() == [("session_started",)]


def test_a_new_transaction_between_two_reads_is_a_new_session(tmp_path):
    # OCPP: one EV leaves and the next plugs in between two cycles (no cycle sees the
    # connector vacant). The new transaction id ends the first session and starts the
    # second, whose counter is its own from zero; neither session takes the other's kWh.
    db = connect(tmp_path / "agent.db")
    clock = ManualClock()
    t = SessionTracker(db, clock)

    def tx_snap(tx, energy):
        c = ConnectorState("CP1", 1, "C", 11.0, energy, transaction_id=tx)
        return Snapshot(clock.monotonic(), clock.now(), 10.0, None, None,
                        (ChargerState("CP1", True, (c,)),))  # fmt: skip

    (first,) = step(t, tx_snap("7", 0.0))
    clock.advance(60)
    step(t, tx_snap("7", 9.5))
    clock.advance(1)
    (second,) = step(t, tx_snap("8", 0.2))
    assert second.id != first.id and second.energy_kwh == 0.2
    clock.advance(60)
    step(t, tx_snap("8", 3.0))
    t.flush()
    rows = {r["id"]: r for r in db.query("SELECT id, status, energy_kwh FROM sessions")}
    assert (rows[first.id]["status"], rows[first.id]["energy_kwh"]) == ("stopped", 9.5)
    assert rows[second.id]["status"] == "active" and second.energy_kwh == 3.0
