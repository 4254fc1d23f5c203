"""The MQTT side of the uplink: connect, drain the outbox in seq order, take commands.

One session per connection:
- CONNECT with a retained Will (`state` offline), then publish `state` online (retained).
- Subscribe to `cmd/+`; each command goes to the dispatcher, whose reply lands in the
  outbox (and, for an MQTT v5 response topic, is published directly).
- Drain: QoS 1, oldest first, `window` publishes in flight; a row is deleted only after its
  PUBACK arrived with a success reason code (< 0x80). aiomqtt's `publish()` returns
  normally on a v5 failure code, so `AckClient` takes the code from paho's `on_publish`.
- A dead link is noticed by paho's keepalive (about 2 x keepalive), which ends aiomqtt's
  message iterator; everything in flight is then resent after the reconnect.
- Every PUBACK has a backstop (`ack_timeout_s`): a broker that keeps the TCP link and
  the keepalive up but stops acknowledging ends the session, and the rows are resent.
- Reconnects back off exponentially with jitter, up to `backoff_max_s`.
- Cancelling `run()` always ends it. On Python 3.11 a cancellation can be swallowed when it
  coincides with the awaited result: `asyncio.wait_for` (used by aiomqtt for CONNACK)
  returns the already-finished future's outcome instead (a refused CONNACK surfaces as an
  ordinary MqttError), the loop reconnected, and the task never ended: whoever awaited the
  cancelled uplink hung. `run()` therefore checks the task's pending cancellation
  (`Task.cancelling()`) after every session, and `_session()` after each of aiomqtt's
  waits that succeeded (CONNACK, SUBACK: a cancel swallowed there went on into the drain
  for ever); our own waits use `asyncio.timeout()`, which is right on 3.11. The session's
  tasks are not a TaskGroup, which on 3.11 both swallows a cancel that meets a child's
  error and leaves that count raised.
- A row the broker rejects (ACL, quota) is parked, not deleted: it stays in the outbox
  and is retried on a connection at least PARK_RETRY_S later, while the rows behind it
  keep flowing (Mosquitto 2.0 even drops the connection after a denied QoS 1 publish, so
  retrying it at the head would block the outbox for good).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.config.mqtt import MqttSettings
from agent.uplink.outbox import Outbox, Row

log = logging.getLogger(__name__)

# Rows read from SQLite per query while draining.
FETCH = 500
# Acknowledged rows are deleted in batches: at this many, or after ACK_FLUSH_S.
ACK_BATCH = 500
ACK_FLUSH_S = 0.05
# A rejected row is tried again after this long.
PARK_RETRY_S = 300.0


class PublishRejected(aiomqtt.MqttError):
    """The broker answered a PUBLISH with a failure reason code (ACL, quota, ...)."""


class AckClient(aiomqtt.Client):
    """aiomqtt client whose QoS 1 publishes resolve to the PUBACK reason code.

    aiomqtt drops the reason code paho passes to on_publish; we keep our own table of
    futures keyed by message id (aiomqtt's private `_client` is the paho client; pinned
    aiomqtt <3)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._acks: dict[int, asyncio.Future[int]] = {}

    def publish_qos1(
        self, topic: str, payload: bytes, *, retain: bool = False,
        properties: Properties | None = None,
    ) -> asyncio.Future[int]:
        """Send now; the future resolves to the PUBACK reason code (0 on MQTT 3.1.1)."""
        info = self._client.publish(topic, payload, 1, retain, properties)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._acks[info.mid] = future
        return future

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        future = self._acks.pop(mid, None)
        if future is None:
            super()._on_publish(client, userdata, mid, reason_code, properties)
        elif not future.done():
            future.set_result(int(reason_code.value))

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason_code: ReasonCode,
        properties: Properties | None = None,
    ) -> None:
        super()._on_disconnect(client, userdata, flags, reason_code, properties)
        # A publish pending on a dead link would otherwise wait forever.
        self.fail_pending(aiomqtt.MqttError(f"disconnected: {reason_code}"))

    def fail_pending(self, error: BaseException) -> None:
        for future in self._acks.values():
            if not future.done():
                future.set_exception(error)
                future.exception()  # retrieved: nobody may be awaiting it any more
        self._acks.clear()


def reason_name(code: int) -> str:
    try:
        return ReasonCode(paho.PacketTypes.PUBACK, identifier=code).getName()
    except Exception:  # an out-of-spec code from a broken broker
        return f"reason code {code}"


class Backoff:
    """Exponential delays with jitter: base * 2^n, capped, each scaled by U(0.5, 1)."""

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None):
        self.initial, self.maximum = initial, maximum
        self.rng = rng or random.Random()
        self.attempt = 0

    def next(self) -> float:
        ceiling = min(self.maximum, self.initial * 2 ** min(self.attempt, 30))
        self.attempt += 1
        return ceiling * self.rng.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class UplinkStatus:
    connected: bool = False
    last_error: str | None = None
    reconnects: int = 0
    rejected: int = 0
    published: int = 0
    connected_since: float | None = None
    # Commit-to-PUBACK latencies (s) of the last published rows, for the benchmark/health.
    latencies: list[float] = field(default_factory=list)
    keep_latencies: int = 0


CommandHandler = Callable[[str, bytes, str | None, bytes | None], Awaitable[list[tuple[str, bytes, bytes | None]]]]
"""(command name, payload, v5 response topic, correlation data) -> direct publishes."""


class Publisher:
    def __init__(
        self,
        settings: MqttSettings,
        outbox: Outbox,
        *,
        state_payload: Callable[[str], bytes],
        on_command: CommandHandler | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self.state_payload = state_payload
        self.on_command = on_command
        self.status = UplinkStatus()
        self.backoff = Backoff(settings.backoff_initial_s, settings.backoff_max_s, rng)
        self._wake = asyncio.Event()
        self._parked: dict[int, float] = {}  # seq -> monotonic time of its last rejection
        self._loop: asyncio.AbstractEventLoop | None = None
        outbox.add_listener(self._notify)

    def _notify(self) -> None:
        # Appends may come from another thread (an executor); hop onto our loop.
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    # --- connection ---------------------------------------------------------------------

    def _client(self) -> AckClient:
        s = self.settings
        tls_context = None
        if s.tls:
            tls_context = ssl.create_default_context(cafile=str(s.tls_ca_file))
            if s.tls_cert_file is not None:
                tls_context.load_cert_chain(str(s.tls_cert_file), str(s.tls_key_file))
            if s.tls_insecure:
                tls_context.check_hostname = False
        v5 = s.protocol == "5"
        will = aiomqtt.Will(
            s.topic("state"), self.state_payload("offline"), qos=1, retain=True
        )
        return AckClient(
            s.host,
            s.port,
            username=s.username,
            password=self._password(),
            identifier=s.client_id or f"sems-{s.station_id}",
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            will=will,
            # A persistent session keeps our cmd/ subscription's queued commands while away.
            clean_session=None if v5 else False,
            clean_start=False if v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
            properties=_session_expiry(7 * 24 * 3600) if v5 else None,
            keepalive=s.keepalive_s,
            timeout=s.connect_timeout_s,
            tls_context=tls_context,
            tls_insecure=s.tls_insecure if s.tls else None,
            max_inflight_messages=s.window,
        )

    def _password(self) -> str | None:
        """The password, never over plaintext unless the operator said so."""
        s = self.settings
        password = s.resolved_password()
        if password is not None and not s.tls and not s.allow_plaintext:
            raise ValueError("mqtt.password: not sent without TLS (mqtt.tls_ca_file is unset); "
                             "set mqtt.allow_plaintext = true to send it in plaintext")
        return password

    async def run(self) -> None:
        """Connect, serve, reconnect; forever (cancel the task to stop)."""
        self._loop = asyncio.get_running_loop()
        while True:
            delivered = False
            try:
                delivered = await self._session()
            except aiomqtt.MqttError as exc:
                self.status.last_error = _describe(exc)
                log.warning("uplink: %s", self.status.last_error)
            except (OSError, ssl.SSLError, ValueError) as exc:
                # TLS files missing, password file unreadable, ...: keep trying, say why.
                self.status.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("uplink: %s", self.status.last_error)
            except Exception as exc:  # a bug or a broken store must not end the uplink
                self.status.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("uplink: session failed")
            finally:
                self.status.connected = False
                self.status.connected_since = None
            _raise_if_cancelled()
            if delivered:
                self.backoff.reset()
            await asyncio.sleep(self.backoff.next())
            self.status.reconnects += 1

    async def _session(self) -> bool:
        """One connection. Returns True when it delivered something (resets the backoff)."""
        client = self._client()
        published_before = self.status.published
        try:
            async with client:  # aiomqtt waits for the CONNACK with wait_for: may swallow
                try:
                    _raise_if_cancelled()
                    self.status.connected = True
                    self.status.connected_since = time.monotonic()
                    self.status.last_error = None
                    log.info("uplink: connected to %s:%d", self.settings.host,
                             self.settings.port)  # fmt: skip
                    if self.settings.tls and self.settings.tls_insecure:
                        log.warning("uplink: tls_insecure = true: the broker's host name was "
                                    "not checked (lab only; anyone with a valid certificate "
                                    "can pose as the broker)")  # fmt: skip
                    async with asyncio.timeout(self.settings.ack_timeout_s):
                        code = await client.publish_qos1(
                            self.settings.topic("state"), self.state_payload("online"),
                            retain=True,
                        )
                    if code >= 0x80:
                        raise PublishRejected(f"state rejected: {reason_name(code)}")
                    # SUBACK: aiomqtt's wait_for again.
                    await client.subscribe(self.settings.topic("cmd/+"), qos=1)
                    _raise_if_cancelled()
                    inflight: dict[int, float] = {}
                    await _first_to_end(
                        self._drain(client, inflight),
                        self._commands(client),
                        self._ack_backstop(inflight),
                    )
                except asyncio.CancelledError:
                    # Shutting down: a clean DISCONNECT suppresses the Will, so say it.
                    with contextlib.suppress(Exception):
                        offline = client.publish_qos1(
                            self.settings.topic("state"), self.state_payload("offline"),
                            retain=True,
                        )
                        async with asyncio.timeout(2.0):
                            await offline
                    raise
        finally:
            client.fail_pending(aiomqtt.MqttError("disconnected"))
        return self.status.published > published_before

    async def _commands(self, client: AckClient) -> None:
        # Ends with MqttError when the connection drops (keepalive or socket): that is how
        # the session learns of it, and _first_to_end then stops the drain.
        async for message in client.messages:
            if self.on_command is None:
                continue
            if not command_wanted(str(message.topic), bool(message.retain), message.payload,
                                  self.settings.topic("cmd/")):  # fmt: skip
                continue
            name = str(message.topic).rsplit("/", 1)[-1]
            props = message.properties
            response_topic = getattr(props, "ResponseTopic", None) if props else None
            correlation = getattr(props, "CorrelationData", None) if props else None
            payload = message.payload if isinstance(message.payload, bytes) else str(
                message.payload or ""
            ).encode()
            try:
                direct = await self.on_command(name, payload, response_topic, correlation)
            except Exception:  # the dispatcher already turns bad input into replies
                log.exception("uplink: command %s crashed the dispatcher", name)
                continue
            for topic, body, corr in direct:
                props_out = None
                if corr is not None:
                    props_out = Properties(paho.PacketTypes.PUBLISH)
                    props_out.CorrelationData = corr
                # Fire and forget: a lost direct reply is also in the outbox (reply/<id>).
                with contextlib.suppress(aiomqtt.MqttError, ValueError):
                    client.publish_qos1(topic, body, properties=props_out)

    async def _ack_backstop(self, inflight: dict[int, float]) -> None:
        """End the session when the oldest unacknowledged publish is older than
        ack_timeout_s (keepalive alone misses a broker that answers pings only)."""
        limit = self.settings.ack_timeout_s
        while True:
            await asyncio.sleep(min(1.0, limit / 4))
            if inflight and time.monotonic() - min(inflight.values()) > limit:
                raise aiomqtt.MqttError(f"no PUBACK within {limit:g} s")

    async def _drain(self, client: AckClient, inflight: dict[int, float] | None = None) -> None:
        inflight = {} if inflight is None else inflight  # seq -> monotonic send time
        window = asyncio.Semaphore(self.settings.window)
        acked: list[int] = []
        flush_now = asyncio.Event()
        cursor = 0  # everything still in the outbox is unacknowledged: resend from oldest

        def on_ack(row: Row, future: asyncio.Future[int]) -> None:
            window.release()
            inflight.pop(row.seq, None)
            if future.cancelled() or future.exception() is not None:
                return
            code = future.result()
            if code >= 0x80:
                self.status.rejected += 1
                self._parked[row.seq] = time.monotonic()
                self.status.last_error = f"seq {row.seq} rejected: {reason_name(code)}"
                log.warning("uplink: %s (kept, retried in %.0f s)", self.status.last_error,
                            PARK_RETRY_S)
                return
            acked.append(row.seq)
            self.status.published += 1
            if self.status.keep_latencies:
                self.status.latencies.append(time.time() - row.created)
            if len(acked) >= ACK_BATCH:
                flush_now.set()

        flush_task = asyncio.create_task(self._flusher(acked, flush_now))
        try:
            while True:
                self._wake.clear()
                rows = self.outbox.fetch_after(cursor, FETCH)
                if not rows:
                    await self._wake.wait()
                for row in rows:
                    cursor = row.seq
                    parked = self._parked.get(row.seq)
                    if parked is not None:
                        if time.monotonic() - parked < PARK_RETRY_S:
                            continue
                        del self._parked[row.seq]
                    await window.acquire()
                    try:
                        future = client.publish_qos1(row.topic, row.payload)
                    except BaseException:
                        window.release()
                        raise
                    inflight[row.seq] = time.monotonic()
                    future.add_done_callback(functools.partial(on_ack, row))
        finally:
            flush_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flush_task
            if acked:  # acknowledged before the link went: never resend these
                self.outbox.delete(acked)

    async def _flusher(self, acked: list[int], flush_now: asyncio.Event) -> None:
        """Delete acknowledged rows: when `flush_now` is set, else every ACK_FLUSH_S."""
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for returns instead of raising
            # when the cancel from _drain's finally meets flush_now being set, and this loop
            # (and _drain's await of it) would then never end.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(ACK_FLUSH_S):
                    await flush_now.wait()
            flush_now.clear()
            if acked:
                batch = acked[:]
                del acked[:]
                self.outbox.delete(batch)


def _raise_if_cancelled() -> None:
    """Re-raise a cancellation that a library swallowed (see the module docstring)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _session_expiry(seconds: int) -> Properties:
    props = Properties(paho.PacketTypes.CONNECT)
    props.SessionExpiryInterval = seconds
    return props


async def _first_to_end(*coros: Coroutine[Any, Any, None]) -> None:
    """Run the session's tasks until one ends; cancel the rest; re-raise what ended it.

    Not a TaskGroup: on Python 3.11 a failing child leaves the parent task's cancel count
    raised (`Task.cancelling()` stays 1 after the group is done), which would make the
    check for a swallowed cancellation in `run()` stop the uplink after any dropped link."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    raise aiomqtt.MqttError("uplink session ended")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiomqtt.MqttCodeError) and isinstance(exc.rc, ReasonCode):
        return f"{exc.rc.getName()} ({exc.rc.value})"
    return str(exc) or type(exc).__name__


RETAINED_MAX_AGE_S = 60.0  # a retained command older than this is history, not an order


def command_wanted(topic: str, retained: bool, payload: object, prefix: str) -> bool:
    """Whether a message on the command subscription is a command for this station now.

    - Only this station's topic: after a station-id change a persistent session may still
      deliver the old id's commands (seen executed).
    - A retained command is replayed by the broker at every (re)connect: obeyed only if
      it says when it was sent (`"ts"`, ISO-8601) and that is under a minute ago."""
    if not topic.startswith(prefix):
        log.warning("uplink: command on %s ignored: not this station's topic (%s+)", topic, prefix)
        return False
    if not retained:
        return True
    try:
        sent = json.loads(payload if isinstance(payload, (bytes, str)) else b"")["ts"]
        age = (datetime.now(UTC) - datetime.fromisoformat(str(sent).replace("Z", "+00:00")))
        fresh = -5.0 <= age.total_seconds() <= RETAINED_MAX_AGE_S
    except (ValueError, KeyError, TypeError, AttributeError):
        fresh = False
    if not fresh:
        log.warning("uplink: retained command on %s ignored: not fresh (a retained command "
                    "needs a \"ts\" under %g s old)", topic, RETAINED_MAX_AGE_S)  # fmt: skip
    return fresh

