"""Seq is the message's alone (issue 12, finding 9): a refusal published only on a v5
response topic carries seq 0 (not in the sequence), so an independent subscriber that
de-duplicates by seq, as docs/mqtt.md tells it to, never sees one seq on two messages."""

from __future__ import annotations

import asyncio

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.properties import Properties

from agent.uplink import Uplink
from agent.uplink.runner import sample
from uplink.helpers import collecting, running
from uplink.helpers import settings as settings_for


def test_refusals_never_reuse_a_real_messages_seq(mosquitto, tmp_path):
    uplink = Uplink.open(settings_for(mosquitto.port), tmp_path / "station.db", version="t")

    async def scenario() -> None:
        async with collecting(mosquitto.port, topic="#", client_id="independent") as cloud, \
                running(uplink):  # fmt: skip
            await cloud.wait_for(lambda: uplink.status.connected)
            await asyncio.sleep(0.3)  # its cmd/+ subscription follows the connect
            async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="ops",
                                      protocol=aiomqtt.ProtocolVersion.V5) as ops:  # fmt: skip
                for i in range(20):
                    uplink.publish(sample(i))  # a real message, then a refusal right after
                    props = Properties(paho.PacketTypes.PUBLISH)
                    props.ResponseTopic = "ops/replies"
                    props.CorrelationData = f"c{i}".encode()
                    await ops.publish("sems/v1/station/cmd/ping", b"not json", qos=1,
                                      properties=props)  # fmt: skip
                await cloud.wait_for(
                    lambda: sum(r.topic == "ops/replies" for r in cloud.got) >= 20
                    and len(cloud.seqs("/telemetry")) >= 20
                )
        by_seq: dict[int, set[bytes]] = {}
        for r in cloud.got:
            if r.topic.startswith("sems/") and "/state" not in r.topic and "/cmd/" not in r.topic:
                by_seq.setdefault(r.json["seq"], set()).add(r.payload)
        refusals = [r.json for r in cloud.got if r.topic == "ops/replies"]
        assert all(x["seq"] == 0 and x["status"] == "error" for x in refusals), refusals[:3]
        assert 0 not in by_seq
        reused = {s: p for s, p in by_seq.items() if len(p) > 1}
        assert not reused, reused

    asyncio.run(scenario())
