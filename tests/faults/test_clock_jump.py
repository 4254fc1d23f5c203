"""The system clock jumping forward and back under a running daemon (NTP stepping the
clock, an RTC reset at boot). The control loop runs on the monotonic clock; wall-clock
time only stamps records. Injected through the agent's clock abstraction (libfaketime is
not installed in CI images by default): `run_daemon(clock=...)` in this process, against
the simulator and a real Mosquitto, as `sems run` assembles it.

Invariants: the loop keeps its period and the capacity; sessions keep their ids and
energy; ledger intervals are whole 15-minute slots with non-negative energy; the outbox's
seq keeps increasing and every committed message reaches the cloud.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta

import pytest

from agent.app.daemon import run_daemon
from agent.config.settings import AgentSettings
from agent.model.clock import RealClock
from tests.uplink.helpers import assert_complete_in_order, collecting

from .harness import (
    WATCHDOG_USEC,
    NotifyListener,
    Simulator,
    agent_config,
    assert_within_capacity,
)

pytestmark = pytest.mark.timeout(90)


class JumpingClock(RealClock):
    """The real clocks, with the wall clock offset by whatever the test sets."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


def rows(db_path, sql: str) -> list[tuple]:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        return conn.execute(sql).fetchall()


def test_wall_clock_jumps_forward_and_back(mosquitto, tmp_path):
    async def scenario() -> None:
        async with Simulator({"stationId": "SIM1", "gridCapacity": 60.0, "chargers": [
            {"id": "CP1", "maxPower": 50.0, "connectors": 2, "kind": "dc"},
            {"id": "CP2", "maxPower": 22.0, "connectors": 1, "kind": "ac"}]},
                rtu_meter=False) as sim, collecting(mosquitto.port) as cloud:  # fmt: skip
            sim.set(base_load_kw=20.0, pv_kw=0.0)
            db = tmp_path / "agent.db"
            cfg = agent_config(sim.endpoints, db, mqtt_port=mosquitto.port)
            cfg["mqtt"]["telemetry_interval_s"] = 0.5
            settings = AgentSettings(**cfg)
            notify = NotifyListener(tmp_path / "notify.sock")
            clock = JumpingClock()
            stop = asyncio.Event()
            env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": str(WATCHDOG_USEC)}
            daemon = asyncio.create_task(
                run_daemon(settings, clock=clock, environ=env, stop=stop, serve_api=False)
            )
            try:
                deadline = time.monotonic() + 20
                while not notify.last("READY=1") and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                assert notify.last("READY=1"), "the daemon never said READY"
                # The agent's first limits before the EVs: a charger's power-on limit is
                # its rating, which is not the agent's to answer for.
                while (any(c["limit"] >= 22.0 for c in sim.state()["connectors"])
                       and time.monotonic() < deadline):  # fmt: skip
                    await asyncio.sleep(0.05)
                sim.plug("CP1", 1, max_kw=50, capacity_kwh=80, soc=0.2, energy_needed_kwh=60)
                sim.plug("CP2", 1, max_kw=22, capacity_kwh=60, soc=0.2, energy_needed_kwh=40)
                await asyncio.sleep(2.0)
                before = dict(rows(db, "SELECT id, started_at FROM sessions"))
                assert len(before) == 2
                start = time.monotonic()
                clock.offset = timedelta(hours=2, minutes=7)  # forward, across slot ends
                await asyncio.sleep(2.0)
                clock.offset = timedelta(hours=-3)  # back, behind the start
                await asyncio.sleep(2.0)
                clock.offset = timedelta(0)
                await asyncio.sleep(1.0)

                assert not daemon.done()
                # A healthy cycle every half second throughout: the loop ignored the jumps.
                pings = [t for t, m in notify.drain() if m == "WATCHDOG=1" and t >= start]
                gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
                assert len(pings) >= 8 and max(gaps) < 1.0, gaps
                assert_within_capacity(sim)
                # Same sessions, same ids, still charging, energy only ever growing.
                after = rows(db, "SELECT id, started_at, status, energy_kwh FROM sessions")
                assert {r[0]: r[1] for r in after} == before
                assert all(r[2] == "active" and r[3] >= 0 for r in after)
                assert all(c["power"] > 5 for c in sim.state()["connectors"] if c["ev"])
                # Ledger: whole 15-minute slots, no negative energy whatever the jumps did.
                ledger = rows(db, "SELECT period_start, policy, import_kwh FROM ledger")
                assert ledger  # the jump forward closed the running interval
                for period_start, policy, import_kwh in ledger:
                    ts = datetime.fromisoformat(period_start.replace("Z", "+00:00"))
                    assert ts.minute % 15 == 0 and ts.second == 0, period_start
                    assert import_kwh >= 0, (period_start, policy, import_kwh)
            finally:
                stop.set()
                assert await asyncio.wait_for(daemon, 15) == 0
                notify.close()
            # The outbox: every committed seq delivered, first arrivals in order, whatever
            # the timestamps inside say.
            last = rows(db, "SELECT value FROM uplink_counters WHERE name = 'last_seq'")[0][0]
            await cloud.wait_for(lambda: set(range(1, int(last) + 1)) <= set(cloud.seqs()))
            assert_complete_in_order(cloud.seqs(), int(last))
            stamps = [datetime.fromisoformat(json.loads(r.payload)["ts"].replace("Z", "+00:00"))
                      for r in cloud.got if "/state" not in r.topic]  # fmt: skip
            # The jump back is visible in ts: a message stamped hours before the one before it.
            assert any(b < a - timedelta(hours=1) for a, b in zip(stamps, stamps[1:], strict=False))

    asyncio.run(scenario())
