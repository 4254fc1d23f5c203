"""No ghost sessions when a real `sems run` starts on a store holding `active` rows it
cannot carry on (issue 11). The store is left as earlier runs leave it: a session the
API-only station wrote (on CP1#1, the connector where an EV now plugs in), a session on a
charger the configuration no longer has, and one on CP1#2 whose EV left while the agent
was down. The daemon (real simulator chargers, real Mosquitto) must serve only the EV that
is there, under a new id, and tell the cloud the two sessions of its own ended and why.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from e2e_helpers import STATION, api, messages, start_agent, stop_agent, wait_for, write_config
from hardware_sim.simulator import Simulator

from agent.api.context import NewSession
from agent.api.models import StationConfig
from agent.app.virtual_station import VirtualStation
from agent.control.sessions import SessionTracker
from agent.model.clock import ManualClock
from agent.model.snapshot import ChargerState, ConnectorState, Snapshot
from agent.store import connect
from tests.uplink.helpers import collecting

pytestmark = pytest.mark.timeout(120)


def earlier_runs(db_path: Path) -> tuple[str, str, str]:
    """Rows as earlier runs leave them, written by the classes that write them: returns
    (the API station's session on CP1#1, a tracker session on charger OLD, one on CP1#2)."""
    clock = ManualClock()
    config = StationConfig(stationId="E2E1", gridCapacity=60.0, baseLoad=10.0,
                           chargers=[{"id": "CP1", "maxPower": 50.0, "connectors": 2}])  # fmt: skip
    tracker = SessionTracker(connect(db_path), clock)

    def charging(cid: str, idx: int) -> ChargerState:
        return ChargerState(cid, True, tuple(
            ConnectorState(cid, i, "C" if i == idx else "A", 11.0 if i == idx else 0.0, 0.0)
            for i in range(1, idx + 1)))  # fmt: skip

    tracker.update(Snapshot(clock.monotonic(), clock.now(), 20.0, None, None,
                            (charging("OLD", 1), charging("CP1", 2))))  # fmt: skip
    tracker.flush_writes(clock.monotonic())  # then killed: the rows stay 'active'
    ids = {s.charger_id: s.id for s in tracker.active.values()}
    api_sid = VirtualStation(config, connect(db_path), clock).create_session(
        NewSession("CP1", 1, 40.0)).session_id
    return api_sid, ids["OLD"], ids["CP1"]


def statuses(db_path: Path) -> dict[str, tuple[str, str | None]]:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        return {i: (st, r) for i, st, r in conn.execute("SELECT id, status, stop_reason FROM sessions")}


def test_a_restart_serves_only_the_sessions_that_are_there(tmp_path, mosquitto):
    asyncio.run(asyncio.wait_for(_scenario(tmp_path, mosquitto), 110))


async def _scenario(tmp: Path, broker) -> None:  # type: ignore[no-untyped-def]
    log, sock, db_path = tmp / "agent.log", tmp / "api.sock", tmp / "agent.db"
    api_sid, old_sid, vacant_sid = earlier_runs(db_path)
    assert {v[0] for v in statuses(db_path).values()} == {"active"}
    async with Simulator(STATION, rtu_meter=False) as sim, collecting(broker.port) as cloud:
        sim.plug("CP1", 1, max_kw=50, capacity_kwh=80, soc=0.2, energy_needed_kwh=60)
        config = write_config(tmp / "agent.toml", sim.endpoints, tmp, broker.port)
        agent = await start_agent(config, log)
        try:
            def stopped() -> dict[str, str]:
                return {m["sessionId"]: m.get("reason") for m in messages(cloud, "/sessions")
                        if m["event"] == "stopped"}  # fmt: skip

            await wait_for(lambda: {old_sid, vacant_sid} <= stopped().keys(), 30,
                           "the stop events of the sessions that cannot go on")
            assert stopped()[old_sid] == "charger_removed"
            assert stopped()[vacant_sid] == "agent_restart_vacant"
            started = await wait_for(
                lambda: [m for m in messages(cloud, "/sessions") if m["event"] == "started"],
                20, "the plugged EV's session")
            assert len(started) == 1
            new_sid = started[0]["sessionId"]
            assert (started[0]["chargerId"], started[0]["connectorIdx"]) == ("CP1", 1)
            assert new_sid not in (api_sid, old_sid, vacant_sid)
            async with api(sock) as http:
                status = (await http.get("/station/status")).json()
            assert list(status["sessions"]) == [new_sid]
            # The periodic health message lists the active sessions: never a ghost.
            await wait_for(lambda: [m for m in messages(cloud, "/sessions")
                                    if m["event"] == "updated" and m["sessionId"] == new_sid],
                           20, "a periodic session update")  # fmt: skip
            updated = {m["sessionId"] for m in messages(cloud, "/sessions")
                       if m["event"] == "updated"}  # fmt: skip
            assert updated == {new_sid}
        finally:
            assert await stop_agent(agent) == 0, log.read_text()[-4000:]
    rows = statuses(db_path)
    assert rows[old_sid] == ("stopped", "charger_removed")
    assert rows[vacant_sid] == ("stopped", "agent_restart_vacant")
    assert rows[new_sid] == ("active", None)  # the EV is still plugged: resumed next start
    # The API station's row is not the tracker's: untouched (see docs/troubleshooting.md).
    assert rows[api_sid] == ("active", None)
