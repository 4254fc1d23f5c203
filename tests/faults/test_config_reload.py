"""A configuration reload with an invalid file (SIGHUP) or an invalid cloud configuration
(`station.config.set` through the broker): the old configuration stays, the error is
logged or replied, and control goes on. A valid reload then takes effect between cycles."""

from __future__ import annotations

import asyncio
import json
import signal

import aiomqtt
import pytest

from tests.uplink.helpers import collecting

from .harness import Scenario

pytestmark = pytest.mark.timeout(90)
TOPIC = "sems/v1/SIM1"


async def grid_capacity(sc: Scenario) -> float:
    return (await sc.api("GET", "/station/config")).json()["gridCapacity"]


def test_invalid_reload_keeps_the_running_configuration(mosquitto, tmp_path):
    async def scenario() -> None:
        async with Scenario(tmp_path, mqtt_port=mosquitto.port) as sc, \
                collecting(mosquitto.port, topic=f"{TOPIC}/reply/#") as cloud:  # fmt: skip
            sc.sim.set(base_load_kw=20.0, pv_kw=0.0)
            await sc.start_agent()
            sc.ev("CP1", 1, 50.0)
            sc.ev("CP2", 1, 22.0)
            path = sc.agent.config_path
            good = path.read_text()

            # 1. Not TOML at all.
            path.write_text(good + "\n[control\n")
            await sc.agent.signal(signal.SIGHUP)
            await sc.agent.wait_log(r"ERROR .*config reload: .*invalid TOML.*keeping the running")
            # 2. Valid TOML, invalid values: every problem named by its key.
            path.write_text(good.replace("grid_capacity_kw = 60.0", "grid_capacity_kw = -5.0"))
            await sc.agent.signal(signal.SIGHUP)
            await sc.agent.wait_log(r"ERROR .*config reload: station\.grid_capacity_kw: .*keeping")
            await sc.run_for(1.0)
            assert await grid_capacity(sc) == 60.0
            sc.check_invariants()

            # 3. The cloud sends an invalid station configuration: an error reply, no change.
            await sc.agent.wait_log(r"uplink: connected to")
            await asyncio.sleep(0.5)
            bad = {"id": "cfg-1", "config": {"stationId": "SIM1", "gridCapacity": 50.0,
                                             "chargers": [{"id": "CP9", "maxPower": 22.0,
                                                           "connectors": 1}]}}  # fmt: skip
            async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="ops") as ops:
                await ops.publish(f"{TOPIC}/cmd/station.config.set", json.dumps(bad), qos=1)
            await cloud.wait_for(lambda: any(r.json.get("commandId") == "cfg-1" for r in cloud.got))
            reply = next(r.json for r in cloud.got if r.json.get("commandId") == "cfg-1")
            assert reply["status"] == "error" and "CP9" in json.dumps(reply), reply
            assert await grid_capacity(sc) == 60.0

            # 4. A valid file: the new capacity is obeyed from the next cycles on.
            path.write_text(good.replace("grid_capacity_kw = 60.0", "grid_capacity_kw = 45.0"))
            await sc.agent.signal(signal.SIGHUP)
            await sc.agent.wait_log(r"INFO .*config reload: .* applied")
            sc.capacity_changed(45.0)
            assert await grid_capacity(sc) == 45.0
            await sc.wait_for(lambda: sc.sim.state()["gridImport"] <= 45.0 * 1.02, 5, "45 kW")
            await sc.run_for(1.5)
            assert sc.sim.state()["gridImport"] <= 45.0 * 1.02
            sc.check_invariants()
            assert await sc.agent.stop() == 0

    asyncio.run(scenario())
