"""`station.config.set` through the real broker against a running `sems run` (hardware
simulator over loopback Modbus): a valid configuration is applied between cycles, persisted
(it survives a restart), visible in GET /station/config and obeyed by the allocation; an
invalid one gets an error reply and the old configuration stays. The same run covers a
cloud `session.stop` with the EV still plugged in: its connector stays at 0 kW across the
restart until the EV is unplugged, and the session messages carry the session's cost."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiomqtt
import pytest

from tests.faults.harness import Scenario
from tests.uplink.helpers import collecting

pytestmark = pytest.mark.timeout(120)
TOPIC = "sems/v1/SIM1"
CHARGERS = [{"id": "CP1", "maxPower": 50.0, "connectors": 2},
            {"id": "CP2", "maxPower": 22.0, "connectors": 1}]


async def command(port: int, name: str, body: dict) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"ops-{body['id']}") as ops:
        await ops.publish(f"{TOPIC}/cmd/{name}", json.dumps(body), qos=1)


def test_config_set_and_stop_latch_through_the_broker(mosquitto, tmp_path):
    async def scenario() -> None:
        async with Scenario(tmp_path, mqtt_port=mosquitto.port) as sc, \
                collecting(mosquitto.port, topic=f"{TOPIC}/#") as cloud:  # fmt: skip
            def replies(cid: str) -> list[dict]:
                return [r.json for r in cloud.got if r.topic.endswith(f"/reply/{cid}")]

            def sessions(event: str) -> list[dict]:
                return [r.json for r in cloud.got
                        if r.topic.endswith("/sessions") and r.json["event"] == event]

            async def config() -> dict:
                return (await sc.api("GET", "/station/config")).json()

            sc.sim.set(base_load_kw=10.0, pv_kw=0.0)
            await sc.start_agent()
            await sc.agent.wait_log(r"uplink: connected to")
            sc.ev("CP1", 1, 50.0)
            sc.ev("CP2", 1, 22.0)
            await sc.wait_for(lambda: sc.sim.state()["gridImport"] > 50.0, 15, "capacity in use")

            # Valid: 40 kW, applied between cycles, visible and obeyed.
            good = {"id": "cfg-ok", "config": {"stationId": "SIM1", "gridCapacity": 40.0,
                                               "chargers": CHARGERS}}  # fmt: skip
            await command(mosquitto.port, "station.config.set", good)
            await sc.wait_for(lambda: bool(replies("cfg-ok")), 10, "config reply")
            assert replies("cfg-ok")[0]["status"] == "ok", replies("cfg-ok")
            assert (await config())["gridCapacity"] == 40.0
            await sc.wait_for(lambda: sc.sim.state()["gridImport"] <= 40.0 * 1.02, 5, "40 kW")
            await sc.run_for(1.0)
            assert sc.sim.state()["gridImport"] <= 40.0 * 1.02
            sc.check_invariants()

            # Invalid: an error reply naming the field; 40 kW stays.
            bad = {"id": "cfg-bad", "config": {"stationId": "SIM1", "gridCapacity": -5.0,
                                               "chargers": CHARGERS}}  # fmt: skip
            await command(mosquitto.port, "station.config.set", bad)
            await sc.wait_for(lambda: bool(replies("cfg-bad")), 10, "error reply")
            reply = replies("cfg-bad")[0]
            assert reply["status"] == "error" and "gridCapacity" in json.dumps(reply), reply
            assert (await config())["gridCapacity"] == 40.0

            # The cloud stops CP1/1's session with the EV plugged in: 0 kW, priced.
            status = (await sc.api("GET", "/station/status")).json()["sessions"]
            sid = next(k for k, v in status.items() if v["connectorId"] == {"chargerId": "CP1", "idx": 1})
            await command(mosquitto.port, "session.stop", {"id": "stop-1", "sessionId": sid})
            await sc.wait_for(lambda: any(m["sessionId"] == sid for m in sessions("stopped")),
                              10, "stopped message")
            stopped = next(m for m in sessions("stopped") if m["sessionId"] == sid)
            assert stopped["reason"] == "cloud" and stopped["energyKwh"] > 0
            # [tariff] default 0.25 EUR/kWh (no cloud tariff): cost = energy x price.
            assert stopped["costEur"] == pytest.approx(0.25 * stopped["energyKwh"], abs=2e-4)
            await sc.wait_for(lambda: sc.connector("CP1", 1)["power"] < 0.5, 5, "CP1/1 at 0")

            # Restart with the EV still plugged in: the configuration and the latch hold.
            assert await sc.agent.stop() == 0
            await sc.start_agent()
            sock = Path(sc.config["api"]["socket_path"])
            await sc.wait_for(sock.exists, 10, "the API socket after the restart")
            assert (await config())["gridCapacity"] == 40.0
            await sc.run_for(3.0)
            assert sc.connector("CP1", 1)["power"] < 0.5 and sc.connector("CP1", 1)["limit"] < 0.5
            started = [m for m in sessions("started")
                       if (m["chargerId"], m["connectorIdx"]) == ("CP1", 1)]
            assert [m["sessionId"] for m in started] == [sid]
            updated = [m for m in sessions("updated") if m["chargerId"] == "CP2"]
            assert updated and updated[-1]["costEur"] > 0

            # Unplugged and plugged again: a new session charges there.
            sc.sim.unplug("CP1", 1)
            await asyncio.sleep(0.5)
            sc.ev("CP1", 1, 50.0)
            await sc.wait_for(lambda: sc.connector("CP1", 1)["power"] > 1.0, 10, "CP1/1 again")
            assert await sc.agent.stop() == 0

    asyncio.run(scenario())
