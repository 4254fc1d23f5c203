"""Cloud commands: `<prefix>/<stationId>/cmd/<name>` in, `reply/<commandId>` out.

Every command is `{"id", "type"?, "expires"?, ...}`. The dispatcher never raises for bad
input: oversized (> 64 KiB), invalid JSON, unknown names, out-of-range values and expired
commands all get an error reply (when an id can be found). A repeated id returns the stored
reply and runs nothing twice. The reply and the command's record are committed together in
the outbox; when an MQTT v5 sender gave a response topic, the reply is also published there
directly (with its correlation data).

A crash between a command's effect and its reply must not run a redelivered command twice.
Per command (docs/mqtt.md, "Commands"):
- one transaction: the signal commands (power.cap.*, tariff.set, carbon.set,
  vehicle.schedule, v2g.session.*, battery.maintenance.schedule, optimization.run) store
  their effect in the `signals` table on the outbox's own connection: effect, reply and id
  commit in one SQLite transaction (their handlers are synchronous, so nothing else runs on
  the connection in between), or none of them does. So does station.config.set's stored
  configuration.
- idempotent by construction: station.config.set's swap into the running loop (in memory,
  a whole replacement: the same config twice is the same state) and session.stop (the stop
  is written by the control loop on its own connection; a stopped session is no longer
  active, its stop row and latch persist, so a repeat finds nothing to stop and changes
  nothing). ping has no effect.

Commands whose effect belongs to the daemon (`session.stop`, `station.config.set`) go
through `CommandTarget`; the rest are stored in `agent.store.signals` for the control loop and
planner, and the reply says what was stored.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from agent.store import signals as sig
from agent.uplink.messages import Reply, ReplyError, envelope_json, now
from agent.uplink.outbox import Outbox
from agent.uplink.signing import CommandVerifier, parse_exp

if TYPE_CHECKING:
    from agent.state.station_state import StationCommands

log = logging.getLogger(__name__)
UNSEQUENCED = 0  # the seq of a refusal sent only on a v5 response topic (docs/mqtt.md)

MAX_COMMAND_BYTES = 64 * 1024
# A command id becomes a topic level (reply/<id>): no '/', '+', '#', no control characters.
ID_PATTERN = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")
INVALID_ID_TOPIC = "reply/_invalid"
_HEAD_ID = re.compile(rb'"id"\s*:\s*"([A-Za-z0-9._:@-]{1,128})"')


class _Refused(Exception):
    """A stored handler refused: raised through the transaction so its writes roll back."""

    def __init__(self, error: ReplyError) -> None:
        self.error = error


class CommandError(Exception):
    """Raised by a handler or the daemon: becomes an error reply with this code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class CommandTarget(Protocol):
    """What the daemon implements for commands that act on the running station."""

    async def stop_session(self, session_id: str, reason: str | None) -> dict[str, Any]:
        """Stop a session now; return its final figures. Raise KeyError if unknown."""
        ...

    async def apply_station_config(self, config: sig.StationConfig) -> None:
        """Validate against the daemon's full model and swap it in atomically, or raise
        ValueError("field: problem") leaving the old configuration in force."""
        ...


class StationTarget:
    """`CommandTarget` for the daemon: cloud commands through the station's command port
    (`agent.state.StationCommands`), never the control loop's internals."""

    def __init__(self, commands: StationCommands) -> None:
        self.commands = commands

    async def stop_session(self, session_id: str, reason: str | None) -> dict[str, Any]:
        """End the session now: no session on the connector means a target of 0 kW from
        the next cycle, and none starts there again until the EV is unplugged."""
        s = self.commands.stop_session(session_id, reason or "cloud")  # KeyError
        return {
            "sessionId": s.id, "chargerId": s.charger_id, "connectorIdx": s.connector_idx,
            "stoppedAt": s.stopped_at, "energyKwh": round(s.energy_kwh, 4),
            "peakKw": round(s.peak_kw, 3), "costEur": round(s.cost_eur, 4),
        }  # fmt: skip

    async def apply_station_config(self, config: sig.StationConfig) -> None:
        await self.commands.reconfigure(config)


# --- command models ----------------------------------------------------------------------


class Command(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")
    NAME: ClassVar[str]

    id: str = Field(pattern=ID_PATTERN.pattern, description="unique per command; replies go to reply/<id>")
    type: str | None = Field(None, description="the command name, if given must match the topic")
    expires: AwareDatetime | None = Field(None, description="refuse the command after this")
    # Signed commands (agent/uplink/signing.py); `exp` is honoured as an expiry unsigned too.
    exp: datetime | float | None = Field(None, description="valid until: ISO-8601 with a zone or Unix seconds")
    sig: str | None = Field(None, max_length=64, description="HMAC-SHA256, see docs/security.md")


class Ping(Command):
    NAME: ClassVar[str] = "ping"


class StationConfigSet(Command):
    NAME: ClassVar[str] = "station.config.set"
    config: sig.StationConfig


class PowerCapSet(Command):
    NAME: ClassVar[str] = "power.cap.set"
    cap_kw: float = Field(ge=0, le=100_000, description="grid import cap, kW")
    start: AwareDatetime | None = Field(None, description="default: now")
    end: AwareDatetime

    @model_validator(mode="after")
    def _window(self) -> PowerCapSet:
        if self.start is not None and self.end <= self.start:
            raise ValueError("end: must be after start")
        return self


class PowerCapClear(Command):
    NAME: ClassVar[str] = "power.cap.clear"
    cap_id: str | None = Field(None, max_length=128,
                               description="id of the power.cap.set to cancel; omitted: all")


class TariffSet(Command):
    NAME: ClassVar[str] = "tariff.set"
    slots: list[sig.PriceSlot] = Field(min_length=1, max_length=2000)
    demand_charge_eur_kw: float | None = Field(None, ge=0, le=10_000)


class CarbonSet(Command):
    NAME: ClassVar[str] = "carbon.set"
    slots: list[sig.CarbonSlot] = Field(min_length=1, max_length=2000)


class VehicleScheduleCmd(Command, sig.VehicleScheduleFields):
    NAME: ClassVar[str] = "vehicle.schedule"


class V2gSessionStart(Command):
    NAME: ClassVar[str] = "v2g.session.start"
    session_id: str | None = Field(None, max_length=128)
    vehicle_id: str | None = Field(None, max_length=128)
    power_kw: float = Field(gt=0, le=1_000)
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None
    min_soc_pct: float = Field(30.0, ge=0, le=100)
    energy_kwh: float | None = Field(None, gt=0, le=1_000)


class V2gSessionStop(Command):
    NAME: ClassVar[str] = "v2g.session.stop"
    request_id: str | None = Field(None, description="id of the v2g.session.start command")
    session_id: str | None = None
    vehicle_id: str | None = None

    @model_validator(mode="after")
    def _target(self) -> V2gSessionStop:
        if not (self.request_id or self.session_id or self.vehicle_id):
            raise ValueError("requestId: give requestId, sessionId or vehicleId")
        return self


class BatteryMaintenanceSchedule(Command):
    NAME: ClassVar[str] = "battery.maintenance.schedule"
    kind: Literal["calibration", "balancing", "inspection"]
    start: AwareDatetime
    end: AwareDatetime
    target_soc_pct: float | None = Field(None, ge=0, le=100)


class OptimizationRun(Command):
    NAME: ClassVar[str] = "optimization.run"
    horizon_h: float = Field(24.0, gt=0, le=72)
    objective: Literal["cost", "carbon", "peak"] = "cost"


class SessionStop(Command):
    NAME: ClassVar[str] = "session.stop"
    session_id: str = Field(min_length=1, max_length=128)
    reason: str | None = Field(None, max_length=200)


COMMANDS: dict[str, type[Command]] = {
    c.NAME: c
    for c in (
        Ping, StationConfigSet, PowerCapSet, PowerCapClear, TariffSet, CarbonSet, VehicleScheduleCmd,
        V2gSessionStart, V2gSessionStop, BatteryMaintenanceSchedule, OptimizationRun,
        SessionStop,
    )
}

DirectPublish = tuple[str, bytes, bytes | None]  # (topic, payload, correlation data)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in err["loc"]) or "command"
    msg = err["msg"]
    # Model validators word their own message as "field: problem".
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
        if ":" in msg.split(" ", 1)[0]:
            return msg
    return f"{where}: {msg}"


class RefusalLog:
    """Logs commands refused without a usable id (no reply topic to answer on) at most once
    per interval: a storm of malformed commands must not flood the journal. The first refusal
    is logged at once; those that follow within the interval are only counted, and the first
    one after it is logged with that count. Nothing here keeps a timer, so the count of a
    storm's last interval waits for the next refusal (the total is `Dispatcher.refused`)."""

    def __init__(self, interval_s: float = 60.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.monotonic = monotonic
        self.unlogged = 0  # refusals counted since the last line
        self._logged_at: float | None = None

    def refused(self, name: str, message: str) -> None:
        now = self.monotonic()
        if self._logged_at is not None and now - self._logged_at < self.interval_s:
            self.unlogged += 1
            return
        more = (f" ({self.unlogged} more refused in the {now - self._logged_at:.0f} s before, not logged)"
                if self.unlogged and self._logged_at is not None else "")  # fmt: skip
        log.info("command %s refused without a usable id: %s%s", name[:64], message, more)
        self._logged_at, self.unlogged = now, 0


class Dispatcher:
    def __init__(
        self,
        outbox: Outbox,
        signals: sig.Signals,
        *,
        base_topic: str,
        version: str,
        target: CommandTarget | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        retention: timedelta = timedelta(days=7),
        refusal_log: RefusalLog | None = None,
        verifier: CommandVerifier | None = None,
    ) -> None:
        self.outbox = outbox
        self.signals = signals
        self.base_topic = base_topic
        self.version = version
        self.target = target
        self.clock = clock
        self.retention = retention
        self.handled = 0
        self.refused = 0
        self.refusal_log = refusal_log or RefusalLog()
        self.verifier = verifier
        self._last_prune = 0.0
        # Run outside any transaction (effects in memory or on the daemon's connection).
        self._daemon_handlers: dict[str, Callable[[Any], Awaitable[dict[str, Any]]]] = {
            "ping": self._ping,
            "station.config.set": self._station_config,
            "session.stop": self._session_stop,
        }
        # Synchronous, run inside the transaction that commits the reply and the id.
        self._stored_handlers: dict[str, Callable[[Any], dict[str, Any]]] = {
            "station.config.set": self._store_station_config,
            "power.cap.set": self._power_cap,
            "power.cap.clear": self._power_cap_clear,
            "tariff.set": self._tariff,
            "carbon.set": self._carbon,
            "vehicle.schedule": self._vehicle_schedule,
            "v2g.session.start": self._v2g_start,
            "v2g.session.stop": self._v2g_stop,
            "battery.maintenance.schedule": self._battery_maintenance,
            "optimization.run": self._optimization,
        }

    # --- entry point --------------------------------------------------------------------

    async def handle(
        self,
        name: str,
        payload: bytes,
        response_topic: str | None = None,
        correlation: bytes | None = None,
    ) -> list[DirectPublish]:
        """Handle one command message; returns what to publish directly (response topic,
        repeated replies). Never raises for bad input."""
        cmd_id, raw, error = self._parse(payload)
        if cmd_id is None:
            self.refused += 1
            if error is None:
                error = ReplyError(code="invalid", message="id: required")
            self.refusal_log.refused(name, error.message)
            if raw is not None and "id" in raw:
                # An id we cannot use as a topic level: answer on a fixed topic instead.
                body = self._reply_body(None, name, None, error)
                self.outbox.append_raw("reply", INVALID_ID_TOPIC, Reply.SCHEMA, body)
            return self._direct(response_topic, correlation, None, name, error)

        if self.verifier is not None:
            if error is None:
                assert raw is not None
                refusal = self.verifier.refusal(name, payload, raw, self.clock())
                if refusal is not None:
                    error = ReplyError(code=refusal[0], message=refusal[1])  # type: ignore[arg-type]
            if error is not None:  # unauthenticated (even too_large): must not claim the id
                return self._refuse_unauthenticated(cmd_id, name, error, response_topic, correlation)

        stored = self._stored_reply(cmd_id)
        if stored is not None:
            topic = f"{self.base_topic}/reply/{cmd_id}"
            out: list[DirectPublish] = [(topic, stored, None)]
            if response_topic:
                out.append((response_topic, stored, correlation))
            return out

        if error is None:
            assert raw is not None
            payload_out = await self._run(cmd_id, name, raw)
        else:
            payload_out = self._finish(cmd_id, name, None, error)
        if response_topic:
            return [(response_topic, payload_out, correlation)]
        return []

    def _refuse_unauthenticated(
        self, cmd_id: str, name: str, error: ReplyError, response_topic: str | None, correlation: bytes | None
    ) -> list[DirectPublish]:
        """Answer on reply/<id> but record nothing under the id: an unsigned message must
        not claim an id, or it would shadow the genuine command sent with it later."""
        self.refused += 1
        self.refusal_log.refused(name, error.message)
        body = self._reply_body(cmd_id, name, None, error)
        seq = self.outbox.append_raw("reply", f"reply/{cmd_id}", Reply.SCHEMA, body)
        if not response_topic:
            return []
        row = self.outbox.conn.execute("SELECT payload FROM outbox WHERE seq = ?", (seq,)).fetchone()
        return [(response_topic, bytes(row[0]), correlation)]

    def _parse(self, payload: bytes) -> tuple[str | None, dict[str, Any] | None, ReplyError | None]:
        if len(payload) > MAX_COMMAND_BYTES:
            found = _HEAD_ID.search(payload[:4096])
            return (
                found.group(1).decode() if found else None,
                None,
                ReplyError(code="too_large", message=f"payload: {len(payload)} bytes > 65536"),
            )
        try:
            raw = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            return None, None, ReplyError(code="invalid_json", message=f"payload: {exc}"[:300])
        if not isinstance(raw, dict):
            return None, None, ReplyError(code="invalid", message="payload: must be a JSON object")
        cmd_id = raw.get("id")
        if "id" in raw and not (isinstance(cmd_id, str) and ID_PATTERN.match(cmd_id)):
            return None, raw, ReplyError(
                code="invalid_id", message="id: must be 1-128 characters of A-Z a-z 0-9 . _ : @ -"
            )
        return cmd_id, raw, None

    def _validate(self, name: str, raw: dict[str, Any]) -> tuple[Any, ReplyError | None]:
        model = COMMANDS.get(name)
        if model is None:
            return None, ReplyError(code="unknown_command", message=f"command: unknown '{name[:64]}'")
        if "type" in raw and raw["type"] != name:
            return None, ReplyError(
                code="invalid", message=f"type: '{str(raw['type'])[:64]}' does not match cmd/{name}"
            )
        try:
            cmd = model.model_validate(raw)
        except ValidationError as exc:
            return None, ReplyError(code="invalid", message=_first_error(exc)[:500])
        if cmd.expires is not None and cmd.expires <= self.clock():
            return None, ReplyError(code="expired", message=f"expires: {cmd.expires.isoformat()} has passed")
        if "exp" in raw:
            exp = parse_exp(raw["exp"])
            if exp is None:
                return None, ReplyError(code="invalid_exp", message="exp: ISO-8601 with a zone or Unix seconds")
            if exp <= self.clock():
                return None, ReplyError(code="expired", message=f"exp: {exp.isoformat()} has passed")
        return cmd, None

    async def _run(self, cmd_id: str, name: str, raw: dict[str, Any]) -> bytes:
        """Validate and run the command; its reply (committed with the id) as published."""
        cmd, error = self._validate(name, raw)
        if error is not None:
            return self._finish(cmd_id, name, None, error)
        result: dict[str, Any] | None = None
        try:
            daemon = self._daemon_handlers.get(name)
            if daemon is not None:
                result = await daemon(cmd)
            stored = self._stored_handlers.get(name)
            if stored is None:
                assert result is not None
                return self._finish(cmd_id, name, result, None)
            try:
                # Effect, reply and id: one commit (a failure rolls all three back).
                with self.outbox.transaction():
                    try:
                        result = stored(cmd)
                    except Exception as exc:
                        raise _Refused(self._error_of(name, cmd.id, exc)) from exc
                    return self._finish(cmd_id, name, result, None)
            except BaseException:
                self.signals.reload()  # the in-memory copy may hold what was rolled back
                raise
        except _Refused as refused:
            return self._finish(cmd_id, name, None, refused.error)
        except Exception as exc:  # a daemon handler's refusal or failure
            return self._finish(cmd_id, name, None, self._error_of(name, cmd.id, exc))

    def _error_of(self, name: str, cmd_id: str, exc: Exception) -> ReplyError:
        if isinstance(exc, CommandError):
            return ReplyError(code=exc.code, message=exc.message[:500])  # type: ignore[arg-type]
        if isinstance(exc, ValidationError):
            return ReplyError(code="invalid", message=_first_error(exc)[:500])
        if isinstance(exc, ValueError):
            return ReplyError(code="invalid", message=str(exc)[:500])
        log.error("command %s (%s) failed", name, cmd_id, exc_info=exc)
        return ReplyError(code="failed", message=f"{type(exc).__name__}: {exc}"[:500])

    def _finish(
        self, cmd_id: str, name: str, result: dict[str, Any] | None, error: ReplyError | None
    ) -> bytes:
        """Count the outcome and commit the reply with the id (joining an open transaction)."""
        payload = self._commit_reply(cmd_id, name, self._reply_body(cmd_id, name, result, error))
        if error is not None:
            self.refused += 1
        else:
            self.handled += 1
        return payload

    # --- replies ------------------------------------------------------------------------

    def _reply_body(
        self, cmd_id: str | None, name: str, result: dict[str, Any] | None, error: ReplyError | None
    ) -> str:
        reply = Reply(
            command_id=cmd_id,
            command=name[:128],
            status="error" if error else "ok",
            result=result,
            error=error,
        )
        body = reply.model_dump(mode="json", by_alias=True, exclude_none=True)
        body.setdefault("commandId", None)  # always present: null when the command had none
        return json.dumps(body, separators=(",", ":"))

    def _commit_reply(self, cmd_id: str, name: str, body: str) -> bytes:
        with self.outbox.transaction() as conn:
            seq = self.outbox.append_raw("reply", f"reply/{cmd_id}", Reply.SCHEMA, body)
            payload = conn.execute("SELECT payload FROM outbox WHERE seq = ?", (seq,)).fetchone()[0]
            conn.execute(
                "INSERT OR REPLACE INTO uplink_commands(id, name, received, reply) VALUES (?,?,?,?)",
                (cmd_id, name[:128], time.time(), payload),
            )
            self._maybe_prune(conn)
        return bytes(payload)

    def _maybe_prune(self, conn: Any) -> None:
        now = time.time()
        if now - self._last_prune > 3600:
            self._last_prune = now
            conn.execute(
                "DELETE FROM uplink_commands WHERE received < ?",
                (now - self.retention.total_seconds(),),
            )

    def _stored_reply(self, cmd_id: str) -> bytes | None:
        row = self.outbox.conn.execute(
            "SELECT reply FROM uplink_commands WHERE id = ?", (cmd_id,)
        ).fetchone()
        return bytes(row[0]) if row else None

    def _direct(
        self, response_topic: str | None, correlation: bytes | None, cmd_id: str | None,
        name: str, error: ReplyError,
    ) -> list[DirectPublish]:
        if not response_topic:
            return []
        body = self._reply_body(cmd_id, name, None, error)
        # Not committed (there is no id to de-duplicate on), so not in the sequence: seq 0,
        # which no message has (seqs start at 1). The high-water mark it carried before
        # was a real message's seq, and a cloud de-duplicating by seq dropped that message.
        payload = envelope_json(Reply.SCHEMA, self.outbox.station_id, UNSEQUENCED, now(), body)
        return [(response_topic, payload, correlation)]

    # --- handlers -----------------------------------------------------------------------

    async def _ping(self, cmd: Ping) -> dict[str, Any]:
        return {"pong": True, "version": self.version, "time": self.clock().isoformat()}

    async def _station_config(self, cmd: StationConfigSet) -> dict[str, Any]:
        # Into the running loop first (it may refuse it); then stored with the reply.
        if self.target is not None:
            await self.target.apply_station_config(cmd.config)
        return {}

    def _store_station_config(self, cmd: StationConfigSet) -> dict[str, Any]:
        stored = self.signals.replace_station_config(cmd.config)
        return {"applied": self.target is not None, "config": stored.dump()}

    def _power_cap_clear(self, cmd: PowerCapClear) -> dict[str, Any]:
        cleared = self.signals.clear_power_caps(cmd.cap_id)
        if cmd.cap_id is not None and not cleared:
            raise ValueError(f"capId: no power cap {cmd.cap_id!r}")
        return {"cleared": cleared, "activeCapKw": self.signals.active_power_cap(self.clock())}

    def _power_cap(self, cmd: PowerCapSet) -> dict[str, Any]:
        start = cmd.start or self.clock()
        if cmd.end <= start:
            raise CommandError("invalid", "end: must be in the future")
        cap = self.signals.set_power_cap(sig.PowerCap(id=cmd.id, cap_kw=cmd.cap_kw, start=start, end=cmd.end))
        return {"stored": cap.dump(), "activeCapKw": self.signals.active_power_cap(self.clock())}

    def _tariff(self, cmd: TariffSet) -> dict[str, Any]:
        t = self.signals.set_tariff(
            sig.Tariff(id=cmd.id, slots=cmd.slots, demand_charge_eur_kw=cmd.demand_charge_eur_kw)
        )
        return {"stored": {"id": t.id, "slots": len(t.slots), "from": t.slots[0].start.isoformat(),
                           "to": t.slots[-1].end.isoformat(),
                           "demandChargeEurKw": t.demand_charge_eur_kw}}

    def _carbon(self, cmd: CarbonSet) -> dict[str, Any]:
        c = self.signals.set_carbon(sig.CarbonForecast(id=cmd.id, slots=cmd.slots))
        return {"stored": {"id": c.id, "slots": len(c.slots), "from": c.slots[0].start.isoformat(),
                           "to": c.slots[-1].end.isoformat()}}

    def _vehicle_schedule(self, cmd: VehicleScheduleCmd) -> dict[str, Any]:
        if cmd.departure <= self.clock():
            raise CommandError("invalid", "departure: must be in the future")
        fields = cmd.model_dump(include=set(sig.VehicleScheduleFields.model_fields))
        s = self.signals.add_vehicle_schedule(sig.VehicleSchedule(id=cmd.id, **fields))
        return {"stored": s.dump()}

    def _v2g_start(self, cmd: V2gSessionStart) -> dict[str, Any]:
        r = self.signals.add_v2g_request(sig.V2gRequest(
            id=cmd.id, session_id=cmd.session_id, vehicle_id=cmd.vehicle_id, power_kw=cmd.power_kw,
            start=cmd.start or self.clock(), end=cmd.end, min_soc_pct=cmd.min_soc_pct,
            energy_kwh=cmd.energy_kwh,
        ))
        return {"stored": r.dump()}

    def _v2g_stop(self, cmd: V2gSessionStop) -> dict[str, Any]:
        def matches(r: sig.V2gRequest) -> bool:
            return (
                (cmd.request_id is not None and r.id == cmd.request_id)
                or (cmd.session_id is not None and r.session_id == cmd.session_id)
                or (cmd.vehicle_id is not None and r.vehicle_id == cmd.vehicle_id)
            )

        stopped = self.signals.stop_v2g(matches, self.clock())
        if not stopped:
            raise CommandError("not_found", "requestId: no active V2G request matches")
        return {"stopped": [r.id for r in stopped]}

    def _battery_maintenance(self, cmd: BatteryMaintenanceSchedule) -> dict[str, Any]:
        w = self.signals.add_battery_maintenance(sig.BatteryMaintenance(
            id=cmd.id, kind=cmd.kind, start=cmd.start, end=cmd.end, target_soc_pct=cmd.target_soc_pct
        ))
        return {"stored": w.dump()}

    def _optimization(self, cmd: OptimizationRun) -> dict[str, Any]:
        r = self.signals.add_optimization_request(sig.OptimizationRequest(
            id=cmd.id, horizon_h=cmd.horizon_h, objective=cmd.objective, requested_at=self.clock()
        ))
        return {"stored": r.dump()}

    async def _session_stop(self, cmd: SessionStop) -> dict[str, Any]:
        if self.target is None:
            raise CommandError("unavailable", "session.stop: no control loop is running")
        try:
            return await self.target.stop_session(cmd.session_id, cmd.reason)
        except KeyError:
            raise CommandError("not_found", f"sessionId: no active session '{cmd.session_id}'") from None
