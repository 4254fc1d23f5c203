"""Cancelling the uplink always ends it, even when a library swallowed the cancellation
(Python 3.11's asyncio.wait_for returns a CONNACK refusal that lands in the same instant;
a TaskGroup raises a child's error instead), and a PUBACK that never comes ends the session.
"""

from __future__ import annotations

import asyncio

import aiomqtt
import pytest

from agent.uplink.publisher import Publisher
from tests.uplink.helpers import (
    assert_complete_in_order,
    awaiting,
    collecting,
    open_uplink,
    running,
)

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


WAIT_S = 30.0  # bounded waits, far above what each takes on a loaded machine


@pytest.mark.parametrize("answer", ["on_connect", "on_subscribe"])
def test_a_cancel_as_the_broker_answers_still_ends_run(mosquitto, tmp_path, answer):
    """The cancel lands in the instant the CONNACK or SUBACK has just resolved aiomqtt's
    future and the uplink task has not resumed yet, against a real Mosquitto: 3.11's
    `asyncio.wait_for` (aiomqtt's wait for both) returns the answer instead of raising
    (CPython gh-86296). Before the fix the session went on into the drain for ever and the
    task that cancelled the uplink waited for it for ever (a parallel run's 300 s timeout in
    test_tls_insecure, cancelled right after the reconnection's warning)."""
    uplink = open_uplink(tmp_path, mosquitto.port, connect_timeout_s=5.0)
    publisher = uplink.publisher
    make_client = publisher._client
    cancelled: list[str] = []

    async def scenario() -> None:
        task: asyncio.Task[None] | None = None

        def client_cancelled_at_the_answer() -> object:
            client = make_client()
            paho_client = client._client
            callback = getattr(paho_client, answer)

            def answer_then_cancel(*args: object, **kwargs: object) -> None:
                callback(*args, **kwargs)  # resolves the future aiomqtt's wait_for waits on
                if task is not None and not cancelled:  # ...and the cancel lands now
                    cancelled.append(answer)
                    task.cancel()

            setattr(paho_client, answer, answer_then_cancel)
            return client

        publisher._client = client_cancelled_at_the_answer  # type: ignore[method-assign]
        async with collecting(mosquitto.port) as cloud:
            task = asyncio.create_task(uplink.run())
            done, _ = await asyncio.wait({task}, timeout=WAIT_S)
            assert cancelled == [answer]
            if not done:
                raise AssertionError(f"uplink still running {WAIT_S:g} s after the cancel at "
                                     f"{answer}, in {awaiting(task)}")  # fmt: skip
            assert task.cancelled()
            # It said so on the way out (a clean DISCONNECT suppresses the Will).
            states = lambda: [r.json["status"] for r in cloud.got if r.topic.endswith("/state")]  # noqa: E731
            await cloud.wait_for(lambda: states()[-1:] == ["offline"], WAIT_S)

    asyncio.run(scenario())


@pytest.mark.parametrize("hops", [0, 1, 2])
def test_the_ack_flusher_ends_when_cancelled_as_a_flush_is_asked(tmp_path, hops):
    """_drain's finally cancels its flusher, then awaits it. A cancel that met `flush_now`
    being set (a batch of ACK_BATCH PUBACKs) within the next loop turns was swallowed by
    3.11's wait_for, the flusher looped on and the drain, so the session and the uplink's
    cancel, waited for ever. Here the cancel comes 0, 1 or 2 loop turns after the set."""
    from agent.uplink.runner import sample

    uplink = open_uplink(tmp_path, 1)
    publisher = uplink.publisher

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        acked: list[int] = []
        flush_now = asyncio.Event()
        task = asyncio.create_task(publisher._flusher(acked, flush_now))
        # It flushes: acknowledged rows leave the outbox at a set...
        acked.extend(uplink.publish(sample(i)) for i in range(3))
        flush_now.set()
        deadline = loop.time() + WAIT_S
        while uplink.outbox.stats().depth:
            assert loop.time() < deadline, "acknowledged rows never deleted"
            await asyncio.sleep(0.01)

        def cancel_after(turns: int) -> None:
            if turns:
                loop.call_soon(cancel_after, turns - 1)
            else:
                task.cancel()

        await asyncio.sleep(0.01)
        acked.append(uplink.publish(sample(3)))
        flush_now.set()  # ...and a cancel that meets the next set ends it
        cancel_after(hops)
        done, _ = await asyncio.wait({task}, timeout=WAIT_S)
        if not done:
            raise AssertionError(f"flusher still running {WAIT_S:g} s after its cancel, in "
                                 f"{awaiting(task)}")  # fmt: skip
        assert task.cancelled()

    asyncio.run(scenario())
