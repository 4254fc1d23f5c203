"""Cancelling the uplink always ends it, even when a library swallowed the cancellation
(Python 3.11's asyncio.wait_for returns a CONNACK refusal that lands in the same instant;
a TaskGroup raises a child's error instead), and a PUBACK that never comes ends the session.
"""

from __future__ import annotations

import asyncio

import aiomqtt
import pytest

from agent.uplink.publisher import Publisher
from tests.uplink.helpers import assert_complete_in_order, collecting, open_uplink, running

pytestmark = pytest.mark.timeout(60)


def test_a_swallowed_cancellation_still_ends_run(tmp_path):
    uplink = open_uplink(tmp_path, 1, backoff_initial_s=0.01, backoff_max_s=0.02)
    sessions = 0

    async def session_that_swallows_the_cancel(self: Publisher) -> bool:
        nonlocal sessions
        sessions += 1
        if sessions == 3:
            asyncio.current_task().cancel()  # type: ignore[union-attr]
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError:
                pass  # what wait_for does when its future finished in the same instant
        raise aiomqtt.MqttError("Bad user name or password")

    async def scenario() -> None:
        publisher = uplink.publisher
        publisher._session = session_that_swallows_the_cancel.__get__(publisher)  # type: ignore[method-assign]
        task = asyncio.create_task(publisher.run())
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)  # before the fix: reconnected for ever
        assert sessions == 3

    asyncio.run(scenario())


def test_a_broker_that_stops_acknowledging_is_left_and_rows_resent(mosquitto, tmp_path, caplog):
    uplink = open_uplink(tmp_path, mosquitto.port, ack_timeout_s=1.0, keepalive_s=60,
                         connect_timeout_s=2.0)
    from agent.uplink.runner import sample

    async def scenario() -> None:
        async with collecting(mosquitto.port) as cloud, running(uplink):
            await cloud.wait_for(lambda: uplink.status.connected, 10)
            mosquitto.pause()  # TCP stays up; nothing answers (keepalive 60 s won't notice)
            last = max(uplink.publish(sample(i)) for i in range(20))
            # The backstop ends the session (its log line; status.last_error may already
            # say why the next connection attempt to the frozen broker failed).
            await cloud.wait_for(lambda: "no PUBACK within 1 s" in caplog.text, 10)
            mosquitto.resume()
            await cloud.wait_for(lambda: uplink.outbox.stats().depth == 0, 20)
            await cloud.wait_for(lambda: last in cloud.seqs("/telemetry"), 10)
            assert_complete_in_order(cloud.seqs("/telemetry"), last)

    asyncio.run(scenario())
