"""Which command messages are obeyed: only this station's topic; a retained command only
when fresh (it is replayed at every reconnect); the command-id retention from settings."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import aiomqtt

from agent.uplink import Uplink
from agent.uplink.publisher import command_wanted
from uplink.helpers import collecting, running
from uplink.helpers import settings as settings_for

PREFIX = "sems/v1/station/cmd/"


def ts(seconds_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat()


def test_topic_and_freshness_rules():
    assert command_wanted(PREFIX + "ping", False, b"{}", PREFIX)
    assert not command_wanted("sems/v1/OLD-ID/cmd/ping", False, b"{}", PREFIX)
    fresh = json.dumps({"id": "a", "ts": ts(5)}).encode()
    stale = json.dumps({"id": "a", "ts": ts(3600)}).encode()
    assert command_wanted(PREFIX + "ping", True, fresh, PREFIX)
    assert not command_wanted(PREFIX + "ping", True, stale, PREFIX)
    assert not command_wanted(PREFIX + "ping", True, b'{"id": "a"}', PREFIX)  # no ts
    assert not command_wanted(PREFIX + "ping", True, b"garbage", PREFIX)


def test_retention_days_come_from_settings(tmp_path):
    up = Uplink.open(settings_for(1, command_retention_days=2.5), tmp_path / "s.db", version="t")
    assert up.dispatcher.retention == timedelta(days=2.5)


def test_a_stale_retained_command_is_not_run_on_connect(mosquitto, tmp_path):
    uplink = Uplink.open(settings_for(mosquitto.port), tmp_path / "station.db", version="t")

    async def scenario() -> None:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="ops") as ops:
            await ops.publish(PREFIX + "ping", json.dumps({"id": "old-1"}), qos=1, retain=True)
            async with collecting(mosquitto.port, topic="sems/v1/station/reply/#") as cloud, \
                    running(uplink):  # fmt: skip
                await cloud.wait_for(lambda: uplink.status.connected)
                await asyncio.sleep(0.3)
                await ops.publish(PREFIX + "ping", json.dumps({"id": "live-1"}), qos=1)
                await cloud.wait_for(lambda: any(r.json.get("commandId") == "live-1"
                                                 for r in cloud.got))  # fmt: skip
                assert not any(r.json.get("commandId") == "old-1" for r in cloud.got)
            await ops.publish(PREFIX + "ping", b"", qos=1, retain=True)  # clear it

    asyncio.run(scenario())


def test_power_caps_can_be_cleared(tmp_path):
    from agent.uplink.commands import Dispatcher

    up = Uplink.open(settings_for(1), tmp_path / "s.db", version="t")
    d: Dispatcher = up.dispatcher
    end = (datetime.now(UTC) + timedelta(hours=1)).isoformat()

    async def run() -> list[dict]:
        out = []
        for name, body in (("power.cap.set", {"id": "cap-a", "capKw": 40.0, "end": end}),
                           ("power.cap.set", {"id": "cap-b", "capKw": 30.0, "end": end}),
                           ("power.cap.clear", {"id": "clr-1", "capId": "cap-b"}),
                           ("power.cap.clear", {"id": "clr-2", "capId": "nope"}),
                           ("power.cap.clear", {"id": "clr-3"})):  # fmt: skip
            await d.handle(name, json.dumps(body).encode())
            reply = json.loads(d._stored_reply(body["id"]))
            out.append(reply)
        return out

    replies = asyncio.run(run())
    assert replies[2]["result"] == {"cleared": ["cap-b"], "activeCapKw": 40.0}, replies[2]
    assert replies[3]["status"] == "error" and "capId" in replies[3]["error"]["message"]
    assert replies[4]["result"] == {"cleared": ["cap-a"], "activeCapKw": None}
    assert up.signals.active_power_cap(datetime.now(UTC)) is None
