"""API sessions across a restart and a silent integration (issue 11, "one station"): the
API-only station resumes its `active` rows (same id, energy and cost so far, the limit last
handed out counted in the budget from the first step), announces them as resumed (never
started again), stops a session whose integration went silent, and leaves no row `active`
once its session is gone. A clean shutdown stops nothing.

Real SQLite files and the real `VirtualStation` (virtual chargers under the daemon's
controller, agent/app/virtual_station.py); a restart is a new station on the same file. The
event hook records what the daemon's uplink bridge would be handed. (These tests ran on the
old `ApiStation` and on `VirtualStation` alike before the old one was deleted.)
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from agent.api.context import NewSession
from agent.api.models import StationConfig
from agent.app.virtual_station import VirtualStation
from agent.model.clock import ManualClock
from agent.store import connect
from agent.store.signals import PowerCap, Signals

CONFIG = StationConfig(stationId="S1", gridCapacity=60.0, baseLoad=10.0,
                       chargers=[{"id": "DC1", "maxPower": 50.0, "connectors": 2},
                                 {"id": "AC1", "maxPower": 22.0, "connectors": 2}])  # fmt: skip
BUDGET = 50.0  # gridCapacity - baseLoad


class Hook:
    def __init__(self) -> None:
        self.got: list[tuple[str, str, str | None]] = []

    def __call__(self, kind: str, payload: dict) -> None:
        self.got.append((kind, payload["id"], payload.get("reason")))

    def kinds(self, sid: str) -> list[str]:
        return [k for k, i, _ in self.got if i == sid]


def station(db: Path, clock: ManualClock, hook: Hook | None = None, config: StationConfig = CONFIG,
            silence_s: float = 900.0, signals: Signals | None = None) -> VirtualStation:  # fmt: skip
    return VirtualStation(config, connect(db), clock, on_event=hook, silence_s=silence_s,
                          signals=signals)  # fmt: skip


def rows(db: Path) -> dict[str, tuple[str, str | None]]:
    return {r["id"]: (r["status"], r["stop_reason"])
            for r in connect(db).query("SELECT * FROM sessions")}  # fmt: skip


def total(st: VirtualStation) -> float:
    return sum(s.allocated_kw for s in st.sessions())


def test_a_restart_resumes_the_same_session_with_its_energy_and_limit(tmp_path):
    db, clock, hook = tmp_path / "agent.db", ManualClock(), Hook()
    before = station(db, clock, hook)
    sid = before.create_session(NewSession("DC1", 1, 40.0, vehicle_id="EV-7", fleet_id="F")).session_id
    before.report_consumption(sid, 30.0)
    clock.advance(360)  # 6 minutes at 30 kW: 3 kWh
    before.report_consumption(sid, 30.0)
    asyncio.run(before.cycle())
    (old,) = before.sessions()
    assert old.energy_kwh > 2.99 and old.allocated_kw > 0
    assert hook.kinds(sid) == ["session_started"]
    # SIGKILL: nothing more is written; a new station opens the same file.
    clock.advance(30)
    after = station(db, clock, hook)
    (s,) = after.sessions()
    assert (s.session_id, s.charger_id, s.idx) == (sid, "DC1", 1)
    assert s.energy_kwh == round(old.energy_kwh, 4)
    assert (s.vehicle_id, s.fleet_id, s.kind) == ("EV-7", "F", "charging")
    assert s.allocated_kw == old.allocated_kw  # the limit its integration still applies
    assert hook.kinds(sid) == ["session_started", "session_resumed"]  # never started again
    # The integration carries on: its reports add energy to the same session.
    after.report_consumption(sid, 30.0)
    clock.advance(120)
    after.report_consumption(sid, 30.0)
    assert after.sessions()[0].energy_kwh > old.energy_kwh + 0.99
    after.stop_session(sid)
    assert rows(db) == {sid: ("stopped", "api")}
    assert hook.got[-1] == ("session_stopped", sid, "api")


def test_a_clean_shutdown_leaves_rows_resumable(tmp_path):
    db, clock = tmp_path / "agent.db", ManualClock()
    first = station(db, clock)
    sid = first.create_session(NewSession("AC1", 2, 11.0)).session_id
    first.report_consumption(sid, 11.0)
    clock.advance(60)
    first.report_consumption(sid, 11.0)
    first.flush()
    assert rows(db) == {sid: ("active", None)}
    assert [s.session_id for s in station(db, clock).sessions()] == [sid]


def test_a_resumed_session_on_a_charger_no_longer_configured_is_stopped(tmp_path):
    db, clock, hook = tmp_path / "agent.db", ManualClock(), Hook()
    first = station(db, clock)
    gone = first.create_session(NewSession("AC1", 1, 11.0)).session_id
    fewer = first.create_session(NewSession("DC1", 2, 40.0)).session_id
    kept = first.create_session(NewSession("DC1", 1, 40.0)).session_id
    smaller = StationConfig(stationId="S1", gridCapacity=60.0, baseLoad=10.0,
                            chargers=[{"id": "DC1", "maxPower": 50.0, "connectors": 1}])  # fmt: skip
    after = station(db, clock, hook, config=smaller)
    assert [s.session_id for s in after.sessions()] == [kept]
    assert rows(db) == {gone: ("stopped", "charger_removed"),
                        fewer: ("stopped", "connector_removed"), kept: ("active", None)}  # fmt: skip
    assert ("session_stopped", gone, "charger_removed") in hook.got


def test_a_silent_integration_ends_its_session_after_the_silence(tmp_path):
    db, clock, hook = tmp_path / "agent.db", ManualClock(), Hook()
    st = station(db, clock, hook, silence_s=60.0)
    talking = st.create_session(NewSession("DC1", 1, 40.0)).session_id
    silent = st.create_session(NewSession("DC1", 2, 40.0)).session_id
    for _ in range(5):  # 50 s: both still within the silence
        clock.advance(10)
        st.report_consumption(talking, 40.0)
        asyncio.run(st.cycle())
    assert {s.session_id for s in st.sessions()} == {talking, silent}
    assert st.sessions()[0].allocated_kw == 25.0  # DC1's 50 kW shared
    for _ in range(2):  # 70 s since `silent` was last heard of, 10 s for `talking`
        clock.advance(10)
        st.report_consumption(talking, 40.0)
        asyncio.run(st.cycle())
    assert [s.session_id for s in st.sessions()] == [talking]
    assert rows(db)[silent] == ("stopped", "api_silent")
    assert ("session_stopped", silent, "api_silent") in hook.got
    # Its power went to the session still running.
    assert st.sessions()[0].allocated_kw == 40.0


def test_a_resumed_session_whose_integration_never_reports_again_is_ended(tmp_path):
    db, clock, hook = tmp_path / "agent.db", ManualClock(), Hook()
    sid = station(db, clock).create_session(NewSession("AC1", 1, 11.0)).session_id
    clock.advance(3600)  # the agent was down an hour: the silence counts from the restart
    after = station(db, clock, hook, silence_s=120.0)
    asyncio.run(after.cycle())
    assert [s.session_id for s in after.sessions()] == [sid]
    clock.advance(121)
    asyncio.run(after.cycle())
    assert after.sessions() == []
    assert rows(db) == {sid: ("stopped", "api_silent")}
    assert hook.kinds(sid) == ["session_resumed", "session_stopped"]


def test_allocations_never_exceed_the_budget_across_a_restart(tmp_path):
    """Sum of the allocations handed out, after every step: before the restart, at the
    resume (the stored limits), for a session started before the first cycle after it,
    and while the cycles rebalance."""
    db, clock = tmp_path / "agent.db", ManualClock()
    seen: list[float] = []
    first = station(db, clock)
    for charger, idx, vmax in (("DC1", 1, 45.0), ("DC1", 2, 45.0), ("AC1", 1, 22.0)):
        sid = first.create_session(NewSession(charger, idx, vmax)).session_id
        seen.append(total(first))
        first.report_consumption(sid, vmax)
    for _ in range(5):
        clock.advance(1)
        asyncio.run(first.cycle())
        seen.append(total(first))
    held = {s.session_id: s.allocated_kw for s in first.sessions()}
    assert sum(held.values()) > BUDGET - 1  # the budget is in use when the agent dies
    after = station(db, clock)
    assert {s.session_id: s.allocated_kw for s in after.sessions()} == held
    seen.append(total(after))
    # A new EV before the first cycle: only what is free given the resumed limits.
    late = after.create_session(NewSession("AC1", 2, 22.0))
    assert late.allocated_kw <= max(0.0, BUDGET - sum(held.values())) + 1e-9
    seen.append(total(after))
    for _ in range(5):
        clock.advance(1)
        asyncio.run(after.cycle())
        seen.append(total(after))
    assert max(seen) <= BUDGET + 1e-6, seen
    # The cycles did rebalance: the late session got its share (decreases first).
    assert next(s for s in after.sessions() if s.session_id == late.session_id).allocated_kw > 5


def test_a_cap_set_while_the_agent_was_down_is_met_by_the_first_cycle(tmp_path):
    """The limits in force exceed the new budget at the resume (they were handed out under
    the old one): nothing is raised, a new session gets nothing until the first cycle has
    lowered the others, and from that cycle on the sum fits the cap."""
    db, clock = tmp_path / "agent.db", ManualClock()
    first = station(db, clock)
    for idx in (1, 2):
        first.create_session(NewSession("DC1", idx, 45.0))
    clock.advance(1)
    asyncio.run(first.cycle())
    assert total(first) > 40.0
    signals = Signals(connect(db))
    now = clock.now()
    signals.set_power_cap(PowerCap(id="dr", cap_kw=40.0, start=now, end=now + timedelta(hours=1)))
    after = station(db, clock, signals=signals)  # budget now 40 - 10 = 30
    late = after.create_session(NewSession("AC1", 1, 22.0))
    assert late.allocated_kw == 0.0
    for _ in range(4):
        clock.advance(1)
        asyncio.run(after.cycle())
        assert total(after) <= 30.0 + 1e-6
    assert next(s for s in after.sessions() if s.session_id == late.session_id).allocated_kw > 0


def test_a_row_without_a_stored_limit_counts_at_the_most_it_may_draw(tmp_path):
    """A row an older agent wrote (no `limit_kw`): its limit in force is unknown, so it
    counts at its vehicle's maximum within the charger's rating until the first cycle."""
    db, clock = tmp_path / "agent.db", ManualClock()
    first = station(db, clock)
    sid = first.create_session(NewSession("AC1", 1, 11.0)).session_id
    connect(db).execute("UPDATE sessions SET limit_kw = NULL")
    after = station(db, clock)
    assert [(s.session_id, s.allocated_kw) for s in after.sessions()] == [(sid, 11.0)]
    late = after.create_session(NewSession("DC1", 1, 50.0))
    assert late.allocated_kw <= BUDGET - 11.0
