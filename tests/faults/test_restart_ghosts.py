"""Restart onto a store with sessions that cannot go on (issue 11, ghost sessions): `sems run`
killed with SIGKILL while two EVs charge; while it is down the EV on CP1#1 leaves and a new
EV plugs into CP1#2, the connector an old API-station row names; the store also holds a
session on a charger the configuration no longer has. After the restart the tracker stops
what is gone (with its reason), serves the new EV under a new id, and the import measured on
the simulator stays within the capacity throughout (2 %, at most 1 s above)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from agent.api.context import NewSession
from agent.api.models import StationConfig
from agent.app.virtual_station import VirtualStation
from agent.control.sessions import SessionTracker
from agent.model.clock import ManualClock
from agent.model.snapshot import ChargerState, ConnectorState, Snapshot
from agent.store import connect

from .harness import STATION, Scenario

pytestmark = pytest.mark.timeout(120)


def stale_rows(db_path: Path) -> tuple[str, str]:
    """An `active` row on charger OLD (a tracker of an earlier configuration) and one the
    API-only station wrote for CP1#2; returns their ids."""
    clock = ManualClock()
    tracker = SessionTracker(connect(db_path), clock)
    old = ChargerState("OLD", True, (ConnectorState("OLD", 1, "C", 11.0, 0.0),))
    tracker.update(Snapshot(clock.monotonic(), clock.now(), 20.0, None, None, (old,)))
    tracker.flush_writes(clock.monotonic())
    (old_sid,) = (s.id for s in tracker.active.values())
    config = StationConfig(stationId="SIM1", gridCapacity=60.0, baseLoad=10.0,
                           chargers=[{"id": "CP1", "maxPower": 50.0, "connectors": 2}])  # fmt: skip
    api = VirtualStation(config, connect(db_path), clock)
    return old_sid, api.create_session(NewSession("CP1", 2, 40.0)).session_id


def sessions(db_path: Path) -> dict[str, tuple[str, str, int, str | None]]:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:  # beside the agent
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in conn.execute(
            "SELECT id, status, charger_id, connector_idx, stop_reason FROM sessions")}  # fmt: skip


def test_restart_with_ghost_rows_and_evs_changed_while_down(tmp_path):
    async def scenario() -> None:
        async with Scenario(tmp_path, station=STATION) as sc:
            db = sc.agent.db_path
            old_sid, api_sid = stale_rows(db)
            sc.sim.set(base_load_kw=28.0, pv_kw=0.0)
            await sc.start_agent()
            sc.ev("CP1", 1, 50.0)
            sc.ev("CP2", 1, 22.0)

            def on(cid: str, idx: int) -> list[str]:
                return [i for i, (st, c, x, _) in sessions(db).items()
                        if st == "active" and (c, x) == (cid, idx) and i != api_sid]  # fmt: skip

            await sc.wait_for(lambda: bool(on("CP1", 1)) and bool(on("CP2", 1)), 15,
                              "the two EVs' sessions")  # fmt: skip
            (left_sid,) = on("CP1", 1)
            await sc.run_for(1.0)
            await sc.agent.kill()
            sc.assert_within_capacity()
            # While the agent is down: the EV on CP1#1 leaves, a new one plugs into CP1#2.
            sc.sim.unplug("CP1", 1)
            sc.ev("CP1", 2, 50.0)
            seen = len(sc.agent.notify.drain())
            await sc.agent.start()
            await sc.wait_for(lambda: any(m.startswith("WATCHDOG=1")
                                          for _, m in sc.agent.notify.drain()[seen:]), 30,
                              "the restarted agent's first healthy cycle")  # fmt: skip
            await sc.wait_for(lambda: bool(on("CP1", 2)), 15, "the new EV's session")
            await sc.run_for(3.0)
            sc.check_invariants()

            rows = sessions(db)
            assert (rows[left_sid][0], rows[left_sid][3]) == ("stopped", "agent_restart_vacant")
            assert (rows[old_sid][0], rows[old_sid][3]) == ("stopped", "charger_removed")
            assert rows[api_sid][0] == "active"  # the API station's row: not the tracker's
            (new_sid,) = on("CP1", 2)
            assert new_sid not in (api_sid, old_sid, left_sid)
            stops = {e["session_id"]: json.loads(e["data"])["reason"]
                     for e in sc.events("session_stopped")}  # fmt: skip
            assert stops == {left_sid: "agent_restart_vacant", old_sid: "charger_removed"}
            limit = sc.connector("CP1", 2)["limit"]
            assert limit > 1.0, f"the new EV on CP1#2 gets power ({limit} kW)"
            peak = max(kw for _, kw in sc.sim.grid_history)
            print(f"restart onto ghost rows: peak import {peak:.1f} kW of 60 kW, CP1#2 {limit} kW")

    asyncio.run(scenario())
