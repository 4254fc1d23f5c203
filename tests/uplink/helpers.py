"""Test helpers: a cloud-side subscriber that survives broker restarts, and uplink set-up."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.properties import Properties

from agent.uplink import MqttSettings, Uplink


@dataclass
class Received:
    topic: str
    payload: bytes
    correlation: bytes | None = None

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.payload)


@dataclass
class Collector:
    """The cloud: a persistent-session v5 subscriber that reconnects on its own."""

    port: int
    topic: str = "sems/v1/#"
    client_id: str = "cloud"
    got: list[Received] = field(default_factory=list)
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)
    tls: Any = None
    # Called with each message as it arrives, inside the receive loop: what a test must do
    # at the very moment (a kill mid-drain) without the latency of polling `got`.
    on_message: Callable[[Received], None] | None = None
    username: str | None = None  # for a broker with passwords
    password: str | None = None

    async def run(self) -> None:
        props = Properties(paho.PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        while True:  # cancelled by the test
            try:
                async with aiomqtt.Client(
                    "127.0.0.1", self.port, identifier=self.client_id,
                    protocol=aiomqtt.ProtocolVersion.V5, clean_start=False, properties=props,
                    keepalive=5, username=self.username, password=self.password,
                ) as client:
                    await client.subscribe(self.topic, qos=1)
                    self.subscribed.set()
                    async for m in client.messages:
                        corr = getattr(m.properties, "CorrelationData", None) if m.properties else None
                        self.got.append(Received(str(m.topic), bytes(m.payload), corr))
                        if self.on_message is not None:
                            self.on_message(self.got[-1])
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)

    def seqs(self, suffix: str = "") -> list[int]:
        return [r.json["seq"] for r in self.got if r.topic.endswith(suffix) and "/state" not in r.topic]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; collected {len(self.got)} messages")
            await asyncio.sleep(0.02)


def settings(port: int, **overrides: Any) -> MqttSettings:
    base: dict[str, Any] = dict(
        host="127.0.0.1", port=port, station_id="station", keepalive_s=5,
        backoff_initial_s=0.1, backoff_max_s=1.0, window=50,
    )
    base.update(overrides)
    return MqttSettings(**base)


# How long a cancelled task may take to end: far above what it takes (a clean DISCONNECT,
# a 2 s bounded offline publish), far below pytest's timeout.
STOP_S = 30.0


def awaiting(task: asyncio.Task[Any]) -> list[str]:
    """Where a suspended task waits: its chain of awaited coroutines, innermost last."""
    where: list[str] = []
    coro: object = task.get_coro()
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            where.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return where


async def stop(task: asyncio.Task[Any], within: float = STOP_S) -> None:
    """Cancel `task` and wait for it to end, at most `within` s: one that does not end (a
    cancel swallowed, CPython gh-86296) fails here, named, instead of at pytest's timeout.
    Its outcome is not raised (a cancelled task ends with CancelledError by design)."""
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=within)
    if not done:
        raise AssertionError(f"{task.get_name()} still running {within:g} s after it was "
                             f"cancelled, in {awaiting(task)}")  # fmt: skip
    if not task.cancelled():
        task.exception()  # retrieved: as gather(return_exceptions=True) did


@contextlib.asynccontextmanager
async def running(uplink: Uplink):
    s = uplink.publisher.settings
    task = asyncio.create_task(uplink.run(),
                               name=f"uplink.run() (station {s.station_id}, port {s.port})")
    try:
        yield uplink
    finally:
        await stop(task)


@contextlib.asynccontextmanager
async def collecting(port: int, **kwargs: Any):
    collector = Collector(port, **kwargs)
    task = asyncio.create_task(collector.run(),
                               name=f"Collector.run() ({collector.client_id}, port {port})")
    try:
        async with asyncio.timeout(10):
            await collector.subscribed.wait()
        yield collector
    finally:
        await stop(task)


def assert_complete_in_order(seqs: list[int], last: int) -> None:
    """Every seq 1..last arrived at least once, and first arrivals come in order."""
    first: list[int] = []
    seen: set[int] = set()
    for s in seqs:
        if s not in seen:
            seen.add(s)
            first.append(s)
    assert first == sorted(first), "first arrivals out of order"
    missing = sorted(set(range(1, last + 1)) - seen)
    assert not missing, f"missing seqs {missing[:20]} (of {len(missing)})"


def open_uplink(tmp: Path, port: int, **overrides: Any) -> Uplink:
    return Uplink.open(settings(port, **overrides), tmp / "station.db", version="test")
