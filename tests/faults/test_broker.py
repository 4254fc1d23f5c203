"""Uplink faults against a running `sems run` with a real Mosquitto: the broker down for
60 s and back, the broker refusing the credentials, the agent SIGKILLed while it drains an
outbox backlog, and a storm of 10,000 malformed commands.

Invariants in each: the station stays within its grid capacity and the agent keeps
cycling (watchdog pings, checked every half second); every message the agent committed
to its outbox reaches the cloud (seq 1..last, first arrivals in order); a clear log line
and the broker's state in /api/v1/health.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
from pathlib import Path

import aiomqtt
import pytest

from tests.uplink.helpers import assert_complete_in_order, collecting

from .harness import Scenario

pytestmark = pytest.mark.timeout(150)
TOPIC = "sems/v1/SIM1"


def last_seq(db_path: Path) -> int:
    """The highest seq the agent ever committed (its durable counter)."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT value FROM uplink_counters WHERE name = 'last_seq'").fetchone()
    return int(row[0]) if row else 0


def outbox_depth(db_path: Path) -> int:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])


async def charging(sc: Scenario) -> None:
    sc.sim.set(base_load_kw=20.0, pv_kw=0.0)
    await sc.start_agent()
    sc.ev("CP1", 1, 50.0)
    sc.ev("CP2", 1, 22.0)


async def all_delivered(sc: Scenario, cloud, timeout: float = 30.0) -> int:
    """Wait for an empty outbox, then check every committed seq reached the cloud."""
    await sc.wait_for(lambda: outbox_depth(sc.agent.db_path) == 0, timeout, "outbox drained")
    last = last_seq(sc.agent.db_path)
    await cloud.wait_for(lambda: set(range(1, last + 1)) <= set(cloud.seqs()), timeout)
    assert_complete_in_order(cloud.seqs(), last)
    return last


@pytest.mark.slow
def test_broker_down_60s_and_back(mosquitto, tmp_path):
    async def scenario() -> None:
        async with Scenario(tmp_path, mqtt_port=mosquitto.port) as sc, \
                collecting(mosquitto.port) as cloud:  # fmt: skip
            await charging(sc)
            await cloud.wait_for(lambda: len(cloud.seqs()) >= 3)
            mosquitto.stop()
            await sc.agent.wait_log(r"WARNING .*uplink: ")
            before = last_seq(sc.agent.db_path)
            await sc.run_for(5.0)
            deps = (await sc.health())["dependencies"]
            assert deps["broker"]["state"] == "degraded", deps
            sc.ev("CP1", 2, 50.0)  # session events while the broker is away
            await sc.run_for(25.0)
            sc.sim.unplug("CP2", 1)
            await sc.run_for(30.0)
            assert last_seq(sc.agent.db_path) > before + 50  # kept in the outbox meanwhile
            mosquitto.start()  # same port
            await sc.agent.wait_log(r"uplink: connected to 127\.0\.0\.1", timeout=15)
            last = await all_delivered(sc, cloud)
            kinds = {r.topic.rsplit("/", 1)[-1] for r in cloud.got}
            assert {"telemetry", "sessions", "health"} <= kinds, kinds
            assert (await sc.health())["dependencies"]["broker"]["state"] == "ok"
            sc.check_invariants()
            assert last > before

    asyncio.run(scenario())


def test_broker_refuses_credentials_then_accepts_the_rotated_secret(mosquitto_factory, tmp_path):
    broker = mosquitto_factory(passwords={"SIM1": "right-secret", "cloud": "c"})
    password = tmp_path / "mqtt-password"
    password.write_text("wrong-secret\n")
    password.chmod(0o600)

    async def scenario() -> None:
        extra = {"mqtt": {"username": "SIM1", "password_file": str(password),
                          "allow_plaintext": True}}  # fmt: skip
        async with Scenario(tmp_path, mqtt_port=broker.port, extra=extra) as sc:
            await charging(sc)
            await sc.agent.wait_log(r"WARNING .*uplink: (?i:not authori[sz]ed|bad user name or password)")
            await sc.run_for(2.0)  # control goes on without the cloud
            deps = (await sc.health())["dependencies"]
            assert deps["broker"]["state"] == "degraded"
            assert "authorized" in deps["broker"]["detail"], deps
            assert outbox_depth(sc.agent.db_path) > 0  # nothing lost: kept for later
            # The secret is read at each connect: fixing the file is enough, no restart.
            password.write_text("right-secret\n")
            await sc.agent.wait_log(r"uplink: connected to", timeout=15)
            # Acknowledged by the broker (PUBACK) is what empties the outbox.
            await sc.wait_for(lambda: outbox_depth(sc.agent.db_path) == 0, 15, "drained")
            assert (await sc.health())["dependencies"]["broker"]["state"] == "ok"
            sc.check_invariants()

    asyncio.run(scenario())


def test_sigkill_while_draining_a_backlog_loses_nothing(mosquitto_factory, tmp_path):
    # The backlog builds while the broker refuses the agent's secret, with the cloud
    # connected all along: when the secret is fixed, the first message of the drain reaches
    # a subscriber that is already there, and the kill lands inside the drain. (Stopping the
    # broker instead made the agent and the cloud race to reconnect; when the agent won, it
    # drained the whole backlog before the cloud saw a message: `left` 0 in one CI-like run.)
    broker = mosquitto_factory(passwords={"SIM1": "right-secret", "cloud": "c"})
    password = tmp_path / "mqtt-password"
    password.write_text("wrong-secret\n")
    password.chmod(0o600)

    async def scenario() -> None:
        # One publish in flight at a time: the drain takes one round trip per message.
        extra = {"mqtt": {"username": "SIM1", "password_file": str(password),
                          "allow_plaintext": True, "telemetry_interval_s": 0.1, "window": 1}}
        async with Scenario(tmp_path, mqtt_port=broker.port, extra=extra) as sc, \
                collecting(broker.port, username="cloud", password="c") as cloud:  # fmt: skip
            await charging(sc)
            await sc.agent.wait_log(r"WARNING .*uplink: (?i:not authori[sz]ed|bad user name or password)")
            await sc.run_for(6.0)  # a backlog of ~60 telemetry rows and events
            backlog = outbox_depth(sc.agent.db_path)
            assert backlog >= 40
            assert not cloud.seqs()  # nothing got through yet
            # Kill it as soon as the drain has begun (the first message of the backlog
            # reaching the cloud): part of it acknowledged, part in flight, part not sent.
            killed = asyncio.Event()

            def kill_at_first(_: object) -> None:
                if not killed.is_set():
                    sc.agent.proc.send_signal(signal.SIGKILL)
                    killed.set()

            cloud.on_message = kill_at_first
            password.write_text("right-secret\n")  # read again at the next connect
            await asyncio.wait_for(killed.wait(), 20)
            cloud.on_message = None
            assert await asyncio.wait_for(sc.agent.proc.wait(), 10) == -signal.SIGKILL
            committed = last_seq(sc.agent.db_path)
            left = outbox_depth(sc.agent.db_path)
            await sc.agent.start()  # systemd's Restart=always
            await sc.agent.wait_ready()
            # New rows after the old ones: waited for, not assumed within a fixed second
            # (a restarted agent on a loaded machine may take longer to commit its first).
            await sc.wait_for(lambda: last_seq(sc.agent.db_path) > committed, 30,
                              "a row committed after the restart")
            last = await all_delivered(sc, cloud)
            assert last > committed  # the seq counter survived: new rows after the old ones
            assert 0 < left < backlog + 100, (left, backlog)  # the kill left work for the restart
            sc.check_invariants()

    asyncio.run(scenario())


def storm_case(i: int) -> tuple[str, bytes, str | None]:
    """(command name, payload, the id an error reply must come back on, or None)."""
    cid = f"storm-{i}"
    kind = i % 8
    if kind == 0:
        return "ping", b"{not json", None
    if kind == 1:
        return "ping", b"[1, 2, 3]", None
    if kind == 2:
        return "no.such.command", json.dumps({"id": cid}).encode(), cid
    if kind == 3:
        return "session.stop", json.dumps({"id": cid, "sessionId": 42}).encode(), cid
    if kind == 4:
        return "power.cap.set", json.dumps({"id": cid, "capKw": "lots"}).encode(), cid
    if kind == 5:
        return "ping", json.dumps({"id": cid, "expires": "2001-01-01T00:00:00Z"}).encode(), cid
    if kind == 6:
        return "station.config.set", json.dumps({"id": cid, "config": {"gridCapacity": -1}}).encode(), cid
    return "tariff.set", json.dumps({"id": cid, "slots": "none", "zz": {"a": [1]}}).encode(), cid


@pytest.mark.slow
def test_storm_of_10000_malformed_commands(mosquitto, tmp_path):
    cases = [storm_case(i) for i in range(10_000)]
    ids = {cid for _, _, cid in cases if cid is not None}

    async def scenario() -> None:
        async with Scenario(tmp_path, mqtt_port=mosquitto.port) as sc, \
                collecting(mosquitto.port, topic=f"{TOPIC}/reply/#") as cloud:  # fmt: skip
            await charging(sc)
            await sc.agent.wait_log(r"uplink: connected to")
            await asyncio.sleep(0.5)  # its cmd/+ subscription follows the connect
            pings: list[float] = []
            start = time.monotonic()
            async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="ops",
                                      protocol=aiomqtt.ProtocolVersion.V5) as ops:  # fmt: skip
                for chunk in range(0, len(cases), 200):
                    await asyncio.gather(*(
                        ops.publish(f"{TOPIC}/cmd/{name}", payload, qos=1)
                        for name, payload, _ in cases[chunk:chunk + 200]
                    ))  # fmt: skip
                    sc.agent.assert_cycling()
            replied = lambda: {r.json.get("commandId") for r in cloud.got}  # noqa: E731
            deadline = time.monotonic() + 90
            while not ids <= replied() and time.monotonic() < deadline:
                await sc.run_for(1.0)
            missing = ids - replied()
            assert not missing, f"{len(missing)} commands without a reply, e.g. {sorted(missing)[:5]}"
            assert all(r.json["status"] == "error" for r in cloud.got
                       if r.json.get("commandId") in ids)  # fmt: skip
            # The control loop kept going throughout: healthy cycles keep pinging the watchdog
            # (every 0.5 s when the machine is idle: gaps of 0.5-0.7 s were measured with one
            # core kept busy). The bound is what systemd needs with margin (WatchdogSec=10s,
            # pinged at least every 3 s), not the idle period: on a 2-core machine shared by
            # several suites, scheduling alone stretched single gaps to 1.2-1.8 s.
            pings = [t for t, m in sc.agent.notify.messages if m == "WATCHDOG=1" and t >= start]
            gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
            assert pings and max(gaps) < 3.0, max(gaps)
            sc.check_invariants()

    asyncio.run(scenario())
