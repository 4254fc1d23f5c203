"""Session cost (each kWh at the import price in force when counted, persisted) and the
stop latch (a session stopped on request keeps its connector blocked until unplugged, across
restarts)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agent.config.settings import TariffSettings
from agent.control.sessions import SessionTracker
from agent.energy.tariffs import prices_at
from agent.model.clock import ManualClock
from agent.model.snapshot import ChargerState, ConnectorState, Snapshot
from agent.store import connect
from agent.store.signals import PriceSlot, Signals, Tariff

T0 = datetime(2026, 6, 17, 12, 0, tzinfo=UTC)



def step(tracker, s):
    """One cycle of the tracker: update, then the store writes the controller's commit runs."""
    out = tracker.update(s)
    tracker.flush_writes(s.t)
    return out


def snap(clock, state, power=0.0, energy=0.0):
    c = ConnectorState("CP1", 1, state, power, energy)
    return Snapshot(clock.monotonic(), clock.now(), 10.0, None, None,
                    (ChargerState("CP1", True, (c,)),))  # fmt: skip


def tracker(db, clock, events=None):
    """As agent.app.assembly wires it: the ledger's price lookup over the persisted signals."""
    signals = Signals(db)
    tariff = TariffSettings(import_eur_kwh=0.30)
    return SessionTracker(
        db, clock, (lambda k, p: events.append((k, p))) if events is not None else None,
        import_price=lambda ts: prices_at(tariff, signals, ts)[0],
    )


def test_cost_follows_the_price_in_force_and_survives_a_restart(tmp_path):
    path = tmp_path / "agent.db"
    db = connect(path)
    # The cloud's tariff covers 12:30-13:00 at 0.10; outside it the [tariff] default 0.30.
    Signals(db).set_tariff(Tariff(id="t", slots=[PriceSlot(
        start=T0 + timedelta(minutes=30), end=T0 + timedelta(hours=1), import_eur_kwh=0.10)]))
    clock = ManualClock(wall=T0)
    events: list = []
    t = tracker(db, clock, events)
    (s,) = step(t, snap(clock, "C", 20.0, 0.0))
    clock.advance(600)
    step(t, snap(clock, "C", 20.0, 2.0))  # 2 kWh at 0.30
    assert s.cost_eur == pytest.approx(0.60)
    clock.advance(1500)  # 12:35: the cloud tariff is in force
    step(t, snap(clock, "C", 20.0, 5.0))  # 3 kWh at 0.10
    assert s.cost_eur == pytest.approx(0.90)
    assert db["sessions"].get(s.id)["cost_eur"] == pytest.approx(0.90)  # persisted
    # Restart: the same session continues from its stored cost.
    t2 = tracker(connect(path), clock, events)
    clock.advance(60)
    (s2,) = step(t2, snap(clock, "C", 20.0, 6.0))
    assert s2.id == s.id and s2.cost_eur == pytest.approx(1.00)
    clock.advance(1)
    step(t2, snap(clock, "A"))
    stopped = [p for k, p in events if k == "session_stopped"]
    assert stopped[-1]["cost_eur"] == pytest.approx(1.00)
    assert connect(path)["sessions"].get(s.id)["cost_eur"] == pytest.approx(1.00)


def test_a_stop_on_request_latches_the_connector_across_a_restart(tmp_path):
    path = tmp_path / "agent.db"
    clock = ManualClock(wall=T0)
    t = tracker(connect(path), clock)
    (s,) = step(t, snap(clock, "C", 20.0, 1.0))
    t.stop(s.id, "cloud")
    row = connect(path)["sessions"].get(s.id)
    assert (row["status"], row["stop_reason"], row["latched"]) == ("stopped", "cloud", 1)
    assert step(t, snap(clock, "C", 0.0, 1.0)) == []  # still plugged in: no new session
    # The agent restarts with the EV still plugged in: the connector stays blocked.
    t2 = tracker(connect(path), clock)
    for _ in range(3):
        clock.advance(1)
        assert step(t2, snap(clock, "C", 0.0, 1.0)) == []
    # Unplugged: the latch is released (in the store too) and the next EV charges.
    assert step(t2, snap(clock, "A")) == []
    assert connect(path)["sessions"].get(s.id)["latched"] == 0
    t3 = tracker(connect(path), clock)
    (new,) = step(t3, snap(clock, "B"))
    assert new.id != s.id


def test_an_unplugged_session_leaves_no_latch(tmp_path):
    path = tmp_path / "agent.db"
    clock = ManualClock(wall=T0)
    t = tracker(connect(path), clock)
    (s,) = step(t, snap(clock, "C", 20.0, 1.0))
    step(t, snap(clock, "A"))
    row = connect(path)["sessions"].get(s.id)
    assert (row["stop_reason"], row["latched"]) == ("unplugged", 0)
    assert len(step(tracker(connect(path), clock), snap(clock, "B"))) == 1
