"""The broker ACL example of docs/mqtt.md, enforced by a real Mosquitto. The ACL block is
read from the document itself, so what operators copy is what is tested. (TLS with client
certificates, plaintext refused, passwords and the API socket/token are tested where they
are built: see docs/security.md for the list.)"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiomqtt

from agent.uplink.publisher import AckClient  # PUBACK reason codes, which aiomqtt hides

ROOT = Path(__file__).resolve().parents[2]
NOT_AUTHORIZED = 0x87


def docs_acl() -> str:
    text = (ROOT / "docs" / "mqtt.md").read_text()
    section = text[text.index("## Broker set-up"):]
    block = re.search(r"```\n(# /etc/mosquitto/acl.*?)```", section, re.S)
    assert block, "docs/mqtt.md: no ACL block under 'Broker set-up'"
    return block.group(1)


def test_docs_acl_keeps_a_station_to_its_own_prefix(mosquitto_factory):
    acl = docs_acl()
    assert "pattern write sems/v1/%u/#" in acl and "cmd/#" in acl
    broker = mosquitto_factory(passwords={"ST-A": "a-secret", "ST-B": "b-secret", "cloud": "c"},
                               acl=acl)  # fmt: skip

    def client(user: str, password: str, ident: str) -> aiomqtt.Client:
        return aiomqtt.Client("127.0.0.1", broker.port, username=user, password=password,
                              identifier=ident, protocol=aiomqtt.ProtocolVersion.V5)  # fmt: skip

    async def scenario() -> None:
        async with AckClient("127.0.0.1", broker.port, username="ST-A", password="a-secret",
                             protocol=aiomqtt.ProtocolVersion.V5) as a:  # fmt: skip
            assert await a.publish_qos1("sems/v1/ST-A/telemetry", b"{}") < 0x80  # 0x10: no subscriber yet
            assert await a.publish_qos1("sems/v1/ST-B/telemetry", b"{}") == NOT_AUTHORIZED
        async with client("ST-A", "a-secret", "a-sub") as a_sub, \
                client("cloud", "c", "cloud") as cloud:  # fmt: skip
            await a_sub.subscribe("sems/v1/ST-A/cmd/#", qos=1)
            await a_sub.subscribe("sems/v1/ST-B/cmd/#", qos=1)  # granted, but never delivered
            await a_sub.subscribe("sems/v1/ST-B/telemetry", qos=1)
            await asyncio.sleep(0.2)
            await cloud.publish("sems/v1/ST-B/cmd/ping", b"for B", qos=1)
            await cloud.publish("sems/v1/ST-B/telemetry", b"B's data", qos=1)
            await cloud.publish("sems/v1/ST-A/cmd/ping", b"for A", qos=1)
            got: list[tuple[str, bytes]] = []
            async with asyncio.timeout(5):
                async for m in a_sub.messages:
                    got.append((str(m.topic), bytes(m.payload)))
                    if m.payload == b"for A":
                        break
            await asyncio.sleep(0.3)  # anything for B would have arrived before A's by now
            assert got == [("sems/v1/ST-A/cmd/ping", b"for A")], got

    asyncio.run(scenario())
