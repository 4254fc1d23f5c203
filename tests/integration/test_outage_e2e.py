"""The daemon's uplink across a broker outage and a SIGKILL: every committed message
arrives at least once, first arrivals in seq order, no gap, and seq continues after a
restart (real simulator, real `sems run`, real Mosquitto)."""

from __future__ import annotations

import asyncio
import signal
import sqlite3

import pytest
from e2e_helpers import STATION, start_agent, stop_agent, wait_for, write_config
from hardware_sim.simulator import Simulator

from tests.uplink.helpers import assert_complete_in_order, collecting

pytestmark = pytest.mark.timeout(120)


def last_seq(db) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT value FROM uplink_counters WHERE name = 'last_seq'").fetchone()
    return int(row[0]) if row else 0


def test_broker_outage_and_sigkill_lose_nothing(tmp_path, mosquitto):
    asyncio.run(asyncio.wait_for(_scenario(tmp_path, mosquitto), 110))


async def _scenario(tmp_path, broker):
    log = tmp_path / "agent.log"
    db = tmp_path / "agent.db"
    async with Simulator(STATION, rtu_meter=False) as sim, collecting(broker.port) as cloud:
        config = write_config(tmp_path / "agent.toml", sim.endpoints, tmp_path, broker.port,
                              telemetry_s=0.2, health_s=1.0)
        sim.plug("CP1", 1, max_kw=50, capacity_kwh=80, soc=0.2, energy_needed_kwh=60)
        agent = await start_agent(config, log)
        try:
            await wait_for(lambda: len(cloud.seqs()) >= 10, 30, "first messages")
            # The broker goes away while the agent keeps producing (into its outbox).
            broker.stop()
            produced = last_seq(db)
            await wait_for(lambda: last_seq(db) >= produced + 15, 10, "messages during outage")
            broker.start()
            await wait_for(lambda: max(cloud.seqs(), default=0) >= last_seq(db) - 2, 20,
                           "the backlog delivered")
            # SIGKILL while publishing, then a restart: nothing committed is lost.
            agent.send_signal(signal.SIGKILL)
            await agent.wait()
            committed = last_seq(db)
            agent = await start_agent(config, log)
            await wait_for(lambda: max(cloud.seqs(), default=0) > committed + 5, 30,
                           "seq continuing after the restart")
            assert await stop_agent(agent) == 0
            final = last_seq(db)
            await wait_for(lambda: final in cloud.seqs(), 10, "the last message")
            assert_complete_in_order(cloud.seqs(), final)
            starts = [m for m in cloud.got if m.topic.endswith("/sessions")
                      and m.json["event"] == "started"]
            assert len({m.json["sessionId"] for m in starts}) == 1  # resumed, not restarted
        finally:
            await stop_agent(agent)
