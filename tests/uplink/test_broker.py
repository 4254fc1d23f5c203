"""The uplink against a real Mosquitto: outages, silent links, rejections, TLS, passwords,
SIGKILL of a publishing process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiomqtt
import pytest
from mosquitto import make_certs

from agent.uplink import messages
from agent.uplink.publisher import AckClient
from agent.uplink.runner import sample
from uplink.helpers import assert_complete_in_order, collecting, open_uplink, running

ROOT = Path(__file__).resolve().parents[2]


def health() -> messages.Health:
    return messages.Health(reason="change")


def test_outage_every_message_arrives_in_order_without_gap(mosquitto, tmp_path):
    async def scenario() -> None:
        uplink = open_uplink(tmp_path, mosquitto.port)
        async with collecting(mosquitto.port) as cloud, running(uplink):
            last = 0
            for i in range(300):
                last = uplink.publish(sample(i) if i % 10 else health())
                if i == 100:
                    await cloud.wait_for(lambda: len(cloud.seqs()) >= 50)
                    await asyncio.to_thread(mosquitto.stop)  # broker gone while we produce
                if i == 200:
                    assert not uplink.status.connected
                    assert uplink.outbox.stats().depth >= 100  # buffered, not lost
                    await asyncio.to_thread(mosquitto.start)
                await asyncio.sleep(0.005)
            await cloud.wait_for(lambda: set(range(1, last + 1)) <= set(cloud.seqs()))
            assert_complete_in_order(cloud.seqs(), last)
            await cloud.wait_for(lambda: uplink.outbox.stats().depth == 0, timeout=5)
            assert uplink.status.reconnects >= 1

    asyncio.run(scenario())


def test_silent_broker_is_detected_by_keepalive(mosquitto, tmp_path):
    async def scenario() -> None:
        uplink = open_uplink(tmp_path, mosquitto.port, keepalive_s=2)
        async with running(uplink):
            deadline = time.monotonic() + 5
            while not uplink.status.connected and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert uplink.status.connected
            mosquitto.pause()  # TCP stays up, nothing answers
            try:
                t0 = time.monotonic()
                uplink.publish(sample(0))
                while uplink.status.connected and time.monotonic() - t0 < 10:
                    await asyncio.sleep(0.05)
                detected = time.monotonic() - t0
            finally:
                mosquitto.resume()
            assert not uplink.status.connected
            assert detected < 2 * 2 + 2.5, detected  # ~2 x keepalive, not a publish timeout
            assert uplink.outbox.stats().depth == 1  # not acknowledged: kept
            deadline = time.monotonic() + 10
            while uplink.outbox.stats().depth and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert uplink.outbox.stats().depth == 0

    asyncio.run(scenario())


def test_puback_failure_reason_code_is_not_delivery(mosquitto_factory, tmp_path):
    # Anonymous clients may write everything under the station except `health`.
    broker = mosquitto_factory(
        acl="topic readwrite sems/v1/#\ntopic deny sems/v1/station/health\n"
    )

    async def scenario() -> None:
        uplink = open_uplink(tmp_path, broker.port)
        first = uplink.publish(sample(0))
        denied = uplink.publish(health())
        after = uplink.publish(sample(1))
        async with collecting(broker.port) as cloud, running(uplink):
            await cloud.wait_for(lambda: {first, after} <= set(cloud.seqs()))
            await cloud.wait_for(lambda: uplink.status.rejected >= 1)
            await cloud.wait_for(lambda: uplink.outbox.stats().depth == 1)
            assert [r.seq for r in uplink.outbox.fetch_after(0, 10)] == [denied]
            assert denied not in cloud.seqs()  # parked: kept, retried later, never deleted

    asyncio.run(scenario())


def test_tls_with_client_certificates_and_plaintext_refused(mosquitto_factory, tmp_path):
    certs = make_certs(tmp_path / "pki")
    broker = mosquitto_factory(certs=certs)

    async def scenario() -> None:
        uplink = open_uplink(
            tmp_path, broker.port, tls_ca_file=certs.ca, tls_cert_file=certs.client_cert,
            tls_key_file=certs.client_key,
        )
        seq = uplink.publish(sample(0))
        async with running(uplink):
            deadline = time.monotonic() + 10
            while uplink.outbox.stats().depth and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert uplink.outbox.stats().depth == 0, uplink.status.last_error
            assert seq == 1
        # A plaintext client is refused on the TLS listener ...
        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt.Client("127.0.0.1", broker.port, timeout=3):
                pass
        # ... and so is TLS without a client certificate.
        bare = open_uplink(tmp_path / "bare", broker.port, tls_ca_file=certs.ca, connect_timeout_s=1)
        bare.publish(sample(1))
        async with running(bare):
            await asyncio.sleep(2.0)
            assert not bare.status.connected
            assert bare.status.last_error
            assert bare.outbox.stats().depth == 1

    asyncio.run(scenario())


ACL = """pattern write sems/v1/%u/#
pattern read sems/v1/%u/cmd/#
user cloud
topic readwrite sems/v1/#
"""


def test_passwords_acl_and_wrong_credentials_visible_in_health(mosquitto_factory, tmp_path):
    broker = mosquitto_factory(passwords={"station": "s3cret", "cloud": "c"}, acl=ACL)
    (tmp_path / "pw").write_text("s3cret\n")
    (tmp_path / "pw").chmod(0o600)

    async def scenario() -> None:
        wrong = open_uplink(tmp_path / "wrong", broker.port, username="station", password="nope",
                            allow_plaintext=True)  # fmt: skip
        async with running(wrong):
            deadline = time.monotonic() + 10
            while not wrong.status.last_error and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        h = messages.Health(uplink=wrong.uplink_health(), outbox=wrong.outbox_health())
        assert h.uplink is not None and not h.uplink.connected
        assert "Bad user name or password" in (h.uplink.last_error or "") or "authorized" in (
            h.uplink.last_error or ""
        ), h.uplink.last_error

        good = open_uplink(
            tmp_path / "good", broker.port, username="station", password_file=tmp_path / "pw",
            allow_plaintext=True,
        )
        seq = good.publish(sample(0))
        async with running(good):
            deadline = time.monotonic() + 10
            while good.outbox.stats().depth and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert good.outbox.stats().depth == 0, good.status.last_error
        assert seq == 1
        # The example ACL keeps a station inside its own prefix: the broker says so in
        # the PUBACK reason code (0x87 Not authorized), which AckClient surfaces.
        async with AckClient(
            "127.0.0.1", broker.port, username="station", password="s3cret",
            protocol=aiomqtt.ProtocolVersion.V5,
        ) as c:
            assert await c.publish_qos1("sems/v1/other/telemetry", b"{}") == 0x87

    asyncio.run(scenario())


def test_sigkill_while_publishing_loses_no_committed_message(mosquitto, tmp_path):
    db = tmp_path / "kill.db"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(ROOT / ".numba-cache")}

    def runner(*extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "agent.uplink.runner", "--db", str(db), "--port",
             str(mosquitto.port), *extra],
            stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env,
        )

    async def scenario() -> None:
        async with collecting(mosquitto.port) as cloud:
            proc = runner("--count", "100000", "--interval", "0.001")
            committed = 0
            assert proc.stdout is not None
            while committed < 600:
                line = await asyncio.to_thread(proc.stdout.readline)
                assert line, "runner ended early"
                committed = int(line.split()[1])
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            proc.stdout.close()
            assert proc.returncode == -signal.SIGKILL
            # The broker publishes the retained Will for the dead process.
            await cloud.wait_for(
                lambda: any(r.topic.endswith("/state") and r.json["status"] == "offline"
                            for r in cloud.got)
            )

            again = runner("--count", "20", "--interval", "0", "--exit-when-drained")
            out, _ = await asyncio.to_thread(again.communicate, timeout=30)
            assert again.returncode == 0
            new = [int(line.split()[1]) for line in out.splitlines()]
            assert min(new) > committed  # seq survives the crash, never reused
            await cloud.wait_for(lambda: set(range(1, committed + 1)) <= set(cloud.seqs()))
            await cloud.wait_for(lambda: set(new) <= set(cloud.seqs()))

    asyncio.run(scenario())


def test_state_retained_online_then_will_offline(mosquitto, tmp_path):
    async def scenario() -> None:
        uplink = open_uplink(tmp_path, mosquitto.port)
        async with collecting(mosquitto.port, topic="sems/v1/station/state") as cloud:
            async with running(uplink):
                await cloud.wait_for(lambda: any(r.json["status"] == "online" for r in cloud.got))
            await cloud.wait_for(lambda: cloud.got[-1].json["status"] == "offline")
            state = cloud.got[-1].json
            assert state["schema"] == "sems.state.v1" and state["version"] == "test"

    asyncio.run(scenario())


@pytest.mark.parametrize("protocol", ["3.1.1"])
def test_mqtt_311_still_works(mosquitto, tmp_path, protocol):
    async def scenario() -> None:
        uplink = open_uplink(tmp_path, mosquitto.port, protocol=protocol)
        async with collecting(mosquitto.port) as cloud, running(uplink):
            seqs = uplink.publish_many([sample(i) for i in range(50)])
            await cloud.wait_for(lambda: set(seqs) <= set(cloud.seqs()))

    asyncio.run(scenario())
