"""Acceptance for issue 11 "One station": a session reported through the local API of an
API-only station (a grid meter, no charger devices; chargers from POST /station/config) is
a session like a hardware one. It is published on MQTT when it starts (its connector in the
telemetry, with its draw and limit), survives a SIGKILL
and restart of a real `sems run` (the same id, resumed, not started again), is published
when it stops, and leaves no `active` row in the store.

Real simulator (the meter), real Mosquitto, real daemon process. The API-only station
(agent/app/virtual_station.py) writes and publishes its sessions through the tracker's
SessionRecords and resumes its `active` rows at start.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from pathlib import Path

import httpx
import pytest
import tomli_w
from e2e_helpers import STATION, api, start_agent, stop_agent
from hardware_sim.simulator import Simulator

from tests.uplink.helpers import Collector, collecting

pytestmark = pytest.mark.timeout(150)

STATION_CONFIG = {"stationId": "API2", "gridCapacity": 60.0, "baseLoad": 10.0,
                  "chargers": [{"id": "DC1", "maxPower": 60.0, "connectors": 2}]}


def config(meter: dict, tmp: Path, broker_port: int) -> Path:
    cfg = {
        "station": {"id": "API2", "grid_capacity_kw": 60.0, "grid_meter": "meter",
                    "pessimistic_base_load_kw": 10.0},
        "devices": [{"name": "meter", "kind": "meter", "profile": meter["profile"],
                     "unit_id": meter["unit"], "endpoint": f"tcp://{meter['tcp']}"}],
        "control": {"period_s": 0.1, "stale_after_s": 0.5},
        "planner": {"enabled": False},
        "api": {"socket_path": str(tmp / "api.sock")},
        "storage": {"db_path": str(tmp / "agent.db")},
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "station_id": "API2", "keepalive_s": 3,
                 "backoff_initial_s": 0.1, "backoff_max_s": 0.5, "telemetry_interval_s": 1.0,
                 "health_interval_s": 1.0},
    }  # fmt: skip
    path = tmp / "agent.toml"
    path.write_text(tomli_w.dumps(cfg))
    return path


def session_events(cloud: Collector, session_id: str, event: str) -> list[dict]:
    """The distinct messages (by `seq`: delivery is at least once, and a SIGKILL between
    the broker's PUBACK and the outbox's delete resends a message with its own seq)."""
    return list({m.json["seq"]: m.json for m in cloud.got if m.topic.endswith("/sessions")
                 and m.json.get("sessionId") == session_id
                 and m.json.get("event") == event}.values())  # fmt: skip


def api_connector(cloud: Collector, session_id: str) -> dict | None:
    """The latest telemetry's entry for the connector of `session_id` once it draws."""
    for msg in reversed(cloud.got):
        if msg.topic.endswith("/telemetry"):
            for c in msg.json.get("connectors", []):
                if c.get("sessionId") == session_id and c.get("powerKw"):
                    return c
    return None


def rows(db: Path) -> dict[str, str]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return dict(conn.execute("SELECT id, status FROM sessions").fetchall())


async def answering(sock: Path, timeout: float) -> None:
    """Until the daemon's API answers (a SIGKILLed daemon leaves its socket file behind)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            async with api(sock) as http:
                if (await http.get("/health")).status_code == 200:
                    return
        except (httpx.TransportError, OSError):
            pass
        assert loop.time() < deadline, "the API never answered"
        await asyncio.sleep(0.1)


async def active_ids(sock: Path) -> set[str]:
    async with api(sock) as http:
        return set((await http.get("/station/status")).json()["sessions"])


def test_api_session_reaches_mqtt_and_survives_sigkill(tmp_path, mosquitto):
    asyncio.run(asyncio.wait_for(_scenario(tmp_path, mosquitto), 140))


async def _scenario(tmp: Path, broker) -> None:  # type: ignore[no-untyped-def]
    log = tmp / "agent.log"
    sock = tmp / "api.sock"
    db = tmp / "agent.db"
    async with Simulator(STATION, rtu_meter=False) as sim, collecting(broker.port) as cloud:
        cfg = config(sim.endpoints["meter"], tmp, broker.port)
        agent = await start_agent(cfg, log)
        try:
            await answering(sock, 30)
            async with api(sock) as http:
                assert (await http.post("/station/config", json=STATION_CONFIG)).status_code == 200
                r = await http.post("/sessions", json={"connectorId": {"chargerId": "DC1", "idx": 1},
                                                       "vehicleMaxPower": 40.0})
                assert r.status_code == 200, r.text
                sid = r.json()["session"]["sessionId"]
                assert (await http.post(f"/sessions/{sid}/power-update",
                                        json={"consumedPower": 20.0})).status_code == 200
            await cloud.wait_for(lambda: bool(session_events(cloud, sid, "started")), 20)
            # Its connector is in the telemetry, with the session, its draw and its limit.
            await cloud.wait_for(lambda: api_connector(cloud, sid) is not None, 20)
            reported = api_connector(cloud, sid)
            assert reported["chargerId"] == "DC1" and reported["idx"] == 1, reported
            assert reported["powerKw"] == 20.0 and 20.0 <= reported["limitKw"] <= 40.0, reported

            agent.send_signal(signal.SIGKILL)
            await agent.wait()
            assert rows(db)[sid] == "active"
            agent = await start_agent(cfg, log)
            await answering(sock, 30)
            assert sid in await active_ids(sock), "the session was not resumed after SIGKILL"
            async with api(sock) as http:
                assert (await http.post(f"/sessions/{sid}/power-update",
                                        json={"consumedPower": 20.0})).status_code == 200
                assert (await http.post(f"/sessions/{sid}/stop")).status_code == 204
            await cloud.wait_for(lambda: bool(session_events(cloud, sid, "stopped")), 20)
            assert await stop_agent(agent) == 0
            assert len(session_events(cloud, sid, "started")) == 1  # resumed, not started again
            assert session_events(cloud, sid, "updated"), "the resumed session was not reported"
            (stopped,) = session_events(cloud, sid, "stopped")
            assert stopped["reason"] == "api"
            assert rows(db)[sid] == "stopped"
            assert "active" not in rows(db).values()
        finally:
            await stop_agent(agent)
            if agent.returncode not in (0, None, -signal.SIGKILL):
                print(log.read_text()[-4000:])
            print(json.dumps(rows(db)) if db.exists() else "no store")


BUDGET_CONFIG = {"stationId": "API2", "gridCapacity": 60.0, "baseLoad": 10.0,
                 "chargers": [{"id": "DC1", "maxPower": 60.0, "connectors": 2},
                              {"id": "AC1", "maxPower": 22.0, "connectors": 1}]}  # fmt: skip
BUDGET = 50.0  # gridCapacity - baseLoad


async def allocations(sock: Path) -> dict[str, float]:
    async with api(sock) as http:
        sessions = (await http.get("/station/status")).json()["sessions"]
    return {sid: s["allocatedPower"] for sid, s in sessions.items()}


def test_allocations_stay_within_the_budget_across_sigkill_and_a_clean_restart(tmp_path, mosquitto):
    asyncio.run(asyncio.wait_for(_budget_scenario(tmp_path, mosquitto), 140))


async def _budget_scenario(tmp: Path, broker) -> None:  # type: ignore[no-untyped-def]
    """Two sessions share the budget; SIGKILL; a new EV arrives as the agent comes back: the
    resumed sessions keep their limits, the new one gets only what is free, the sum of the
    allocations the API answers never exceeds the budget, and a SIGTERM then leaves all
    three resumable."""
    log, sock, db = tmp / "agent.log", tmp / "api.sock", tmp / "agent.db"
    loop = asyncio.get_running_loop()
    sums: list[float] = []
    async with Simulator(STATION, rtu_meter=False) as sim:
        cfg = config(sim.endpoints["meter"], tmp, broker.port)
        agent = await start_agent(cfg, log)
        try:
            await answering(sock, 30)
            async with api(sock) as http:
                assert (await http.post("/station/config", json=BUDGET_CONFIG)).status_code == 200
                for idx in (1, 2):
                    r = await http.post("/sessions", json={
                        "connectorId": {"chargerId": "DC1", "idx": idx}, "vehicleMaxPower": 45.0})
                    assert r.status_code == 200, r.text
                    sums.append(sum((await allocations(sock)).values()))
            deadline = loop.time() + 10
            while sorted((held := await allocations(sock)).values()) != [25.0, 25.0]:  # fair
                sums.append(sum(held.values()))
                assert loop.time() < deadline, f"never shared the budget: {held}"
                await asyncio.sleep(0.05)
            sums.append(sum(held.values()))

            agent.send_signal(signal.SIGKILL)
            await agent.wait()
            agent = await start_agent(cfg, log)
            await answering(sock, 30)
            resumed = await allocations(sock)
            assert resumed == held, "not resumed with the limits their integration applies"
            sums.append(sum(resumed.values()))
            async with api(sock) as http:
                r = await http.post("/sessions", json={
                    "connectorId": {"chargerId": "AC1", "idx": 1}, "vehicleMaxPower": 22.0})
                assert r.status_code == 200, r.text
                late = r.json()["session"]["sessionId"]
            deadline = loop.time() + 10
            while (now := await allocations(sock)).get(late, 0.0) <= 0.0:
                sums.append(sum(now.values()))
                assert loop.time() < deadline, f"the late session never got power: {now}"
                await asyncio.sleep(0.02)
            for _ in range(20):  # and it stays so while the cycles settle
                sums.append(sum((await allocations(sock)).values()))
                await asyncio.sleep(0.02)
            assert max(sums) <= BUDGET + 1e-6, sums

            assert await stop_agent(agent) == 0  # clean: nothing is stopped
            assert set(rows(db).values()) == {"active"}
            agent = await start_agent(cfg, log)
            await answering(sock, 30)
            assert set(await allocations(sock)) == set(held) | {late}
        finally:
            await stop_agent(agent)
            if agent.returncode not in (0, None, -signal.SIGKILL):
                print(log.read_text()[-4000:])
