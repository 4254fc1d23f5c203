"""Cloud uplink: MQTT with SQLite store-and-forward, and cloud commands (docs/mqtt.md).

Wiring it into the daemon (a few lines)::

    from agent.uplink import Uplink, MqttSettings, messages

    uplink = Uplink.open(settings.mqtt, db_path, version=__version__, target=daemon)
    signals = uplink.signals                   # control loop: signals.active_power_cap(now)
    task = asyncio.create_task(uplink.run())   # connects, drains, takes commands; forever
    uplink.publish(messages.Telemetry(grid=messages.GridReading(power_kw=42.0)))  # -> seq
    uplink.publish_many([...])                 # several messages, one commit
    health = messages.Health(outbox=uplink.outbox_health(), uplink=uplink.uplink_health())
    task.cancel()                              # publishes state offline, disconnects

`publish()` only commits to the outbox (a few ms, fsync): it never waits for the network.
`target` implements `agent.uplink.commands.CommandTarget` (`stop_session`,
`apply_station_config`); without one, `session.stop` replies `unavailable` and
`station.config.set` is validated and stored only. Settings: `MqttSettings` (the `[mqtt]`
table). `python -m agent.uplink.runner` is a small stand-alone producer/publisher;
`python -m agent.uplink.schemas` regenerates docs/schemas/.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.config.mqtt import MqttSettings
from agent.store.signals import Signals
from agent.uplink import messages
from agent.uplink.commands import CommandTarget, Dispatcher
from agent.uplink.outbox import Outbox
from agent.uplink.publisher import Publisher, UplinkStatus
from agent.uplink.signing import CommandVerifier

__all__ = ["MqttSettings", "Uplink", "UplinkStatus", "messages", "CommandTarget"]
log = logging.getLogger(__name__)


class Uplink:
    def __init__(
        self,
        settings: MqttSettings,
        outbox: Outbox,
        signals: Signals,
        *,
        version: str,
        target: CommandTarget | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self.store_error: str | None = None  # why the store refuses messages, if it does
        self.signals = signals
        self.version = version
        self.clock = clock
        self.started = clock()
        key = settings.resolved_command_key()  # ValueError("mqtt.command_hmac_key_file: ...")
        verifier = None if key is None else CommandVerifier(
            key, settings.station_id, timedelta(seconds=settings.command_exp_max_s))
        self.dispatcher = Dispatcher(
            outbox, signals, base_topic=settings.base_topic, version=version, target=target,
            clock=clock, retention=timedelta(days=settings.command_retention_days),
            verifier=verifier,
        )
        self.publisher = Publisher(
            settings, outbox, state_payload=self._state_payload, on_command=self.dispatcher.handle
        )

    @classmethod
    def open(
        cls,
        settings: MqttSettings,
        db_path: str | os.PathLike[str],
        *,
        version: str,
        target: CommandTarget | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_pages: int | None = None,
    ) -> Uplink:
        """Open the station database (its own connection, under the same `[storage]
        max_pages` cap as the daemon's) and build the uplink on it."""
        from agent.store import connect

        db = connect(Path(db_path), max_pages=max_pages)
        outbox = Outbox(
            db,
            station_id=settings.station_id,
            base_topic=settings.base_topic,
            max_rows=settings.outbox_max_rows,
            max_bytes=settings.outbox_max_bytes,
            thin_max_stride=settings.telemetry_thin_max_stride,
            clock=clock,
        )
        try:
            return cls(settings, outbox, Signals(db), version=version, target=target, clock=clock)
        except ValueError:  # the command signing key file: do not leave the store open
            db.conn.close()
            raise

    @property
    def target(self) -> CommandTarget | None:
        return self.dispatcher.target

    @target.setter
    def target(self, value: CommandTarget | None) -> None:
        self.dispatcher.target = value

    def publish(self, message: messages.Message) -> int:
        """Commit one message to the outbox; returns its seq."""
        return self.outbox.append(message)

    def publish_many(self, batch: Iterable[messages.Message]) -> list[int]:
        """Commit a batch; when the store refuses it (disk full, I/O error) the batch is
        dropped and counted in the outbox's `dropped` (health shows it), one ERROR line per
        episode, no traceback. A refused batch takes no seq: what is kept stays gap-free."""
        batch = list(batch)
        try:
            seqs = self.outbox.append_many(batch)
        except sqlite3.Error as exc:
            self.outbox.count_dropped(len(batch))
            if self.store_error is None:
                log.error("uplink: the store refuses messages (%s); dropping them, counted in "
                          "outbox.dropped, until it takes them again", exc)  # fmt: skip
            self.store_error = str(exc)
            return []
        if self.store_error is not None:
            log.info("uplink: the store takes messages again (outbox.dropped = %d)",
                     self.outbox.stats().dropped)  # fmt: skip
            self.store_error = None
        return seqs

    async def run(self) -> None:
        if not self.settings.enabled:
            await asyncio.Event().wait()  # messages still accumulate in the outbox
        await self.publisher.run()

    @property
    def status(self) -> UplinkStatus:
        return self.publisher.status

    def outbox_health(self) -> messages.OutboxHealth:
        s = self.outbox.stats()
        return messages.OutboxHealth(
            depth=s.depth, bytes=s.bytes, oldest_seq=s.oldest_seq, last_seq=s.last_seq,
            thinned=s.thinned, dropped=s.dropped,
        )

    def uplink_health(self) -> messages.UplinkHealth:
        st = self.publisher.status
        return messages.UplinkHealth(
            connected=st.connected, last_error=st.last_error, reconnects=st.reconnects,
            rejected=st.rejected,
        )

    def _state_payload(self, status: str) -> bytes:
        state = messages.State(status=status, version=self.version, started=self.started)  # type: ignore[arg-type]
        return messages.envelope_json(
            state.SCHEMA, self.settings.station_id, self.outbox.last_seq, self.clock(),
            state.body_json(),
        )
