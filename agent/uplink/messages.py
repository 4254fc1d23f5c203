"""Every message the station publishes, as pydantic models (the contract of docs/mqtt.md).

A producer builds a body (`Telemetry`, `SessionEvent`, ...); the outbox adds the envelope
(`schema`, `stationId`, `seq`, `ts`) when it commits the message, so `seq` is allocated in the
same transaction that stores the bytes. JSON field names are camelCase; units kW, kWh, s;
timestamps ISO-8601 UTC.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.alias_generators import to_camel

from allocator.guidance import HoldReason


class Model(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


def iso(ts: datetime) -> str:
    """ISO-8601 UTC with a Z, millisecond precision: the one timestamp format on the wire."""
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Message(Model):
    """A body published on `<prefix>/<stationId>/<TOPIC>`; `KIND` is its outbox class."""

    SCHEMA: ClassVar[str]
    TOPIC: ClassVar[str]
    KIND: ClassVar[str]  # telemetry may be thinned/dropped when the outbox is full; others kept

    def body_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)


def envelope_json(schema: str, station_id: str, seq: int, ts: datetime, body_json: str) -> bytes:
    """Prefix the body's JSON object with the envelope fields, without re-parsing the body."""
    head = json.dumps(
        {"schema": schema, "stationId": station_id, "seq": seq, "ts": iso(ts)},
        separators=(",", ":"),
    )
    rest = body_json[1:]  # body_json is a JSON object: "{...}"
    return (head[:-1] + ("," + rest if rest != "}" else "}")).encode()


# --- telemetry ---------------------------------------------------------------------------


class GridReading(Model):
    power_kw: float | None = Field(
        description="> 0 imports from the grid; null when the meter is stale (no measurement)"
    )
    import_kwh: float | None = Field(None, description="meter import register")
    export_kwh: float | None = Field(None, description="meter export register")
    stale: bool = Field(False, description="the meter did not answer in time this cycle")


class PvReading(Model):
    power_kw: float = Field(ge=0, description="PV production")
    stale: bool = False


class BatteryReading(Model):
    power_kw: float = Field(description="> 0 discharges into the station")
    soc_pct: float | None = Field(None, ge=0, le=100)
    setpoint_kw: float | None = Field(None, description="setpoint written this cycle")
    stale: bool = False


class Held(Model):
    """Why the horizon plan holds a session below what it could draw, with the figures that
    say it: `allocator.guidance.Hold.as_dict()`, the local API's `held`, in camelCase
    (docs/planner.md, "Why a session is held"). Only on a session the plan holds now."""

    reason: HoldReason = Field(
        description="price: more later at a lower price; peak: the demand charge's peak; "
        "schedule: its target is planned in full; v2g: it gives power back; grid: the "
        "capacity or a cap is shared by the plan; charger: its charger is shared; plan: none "
        "of these")
    until: datetime | None = Field(
        None, description="the plan gives it more from then (v2g: stops giving); absent: "
        "not before it leaves or the horizon ends")
    planned_kw: float = Field(description="the plan's power for it now (< 0: V2G)")
    max_kw: float = Field(description="what it could draw: min(vehicle, charger)")
    departure: datetime | None = Field(
        None, description="when it leaves, as the plan knows it (absent: arrived after the plan)")
    due_kwh: float | None = Field(
        None, description="still due by departure after what the plan gives before now")
    open_ended: bool = Field(
        False, description="no known target: dueKwh is only the planner's default")
    price_now_eur_kwh: float | None = Field(None, description="import price now, carbon included")
    price_then_eur_kwh: float | None = Field(
        None, description="the price from `until` (reason price)")
    worth_eur_kwh: float | None = Field(
        None, description="what a kWh is worth to an EV without a target (reason price)")
    peak_kw: float | None = Field(None, description="the plan's peak import")
    demand_charge_eur_kw: float = Field(
        0.0, description="demand charge on the peak; 0: the peak is the plan's own cap")
    limit_kw: float | None = Field(
        None, description="the capacity or cap (reason grid), the charger's rating (charger)")


class ConnectorReading(Model):
    charger_id: str
    idx: int = Field(ge=1)
    state: str | None = Field(None, description="IEC 61851 state A-F")
    limit_kw: float = Field(description="limit written to the charger")
    power_kw: float = Field(description="measured; < 0 is V2G discharge")
    session_id: str | None = None
    held: Held | None = Field(None, description="why the plan holds its session; absent if not")


class Telemetry(Message):
    SCHEMA: ClassVar[str] = "sems.telemetry.v1"
    TOPIC: ClassVar[str] = "telemetry"
    KIND: ClassVar[str] = "telemetry"

    grid: GridReading
    pv: PvReading | None = None
    battery: BatteryReading | None = None
    connectors: list[ConnectorReading] = Field(default_factory=list)
    budget_kw: float | None = Field(None, description="power the EVs may share this cycle")
    power_cap_kw: float | None = Field(None, description="active cloud power cap, if any")


# --- sessions ----------------------------------------------------------------------------


class SessionEvent(Message):
    SCHEMA: ClassVar[str] = "sems.session.v1"
    TOPIC: ClassVar[str] = "sessions"
    KIND: ClassVar[str] = "sessions"

    event: Literal["started", "updated", "stopped"]
    session_id: str
    charger_id: str
    connector_idx: int = Field(ge=1)
    kind: Literal["charging", "v2g"] = "charging"
    started_at: datetime
    stopped_at: datetime | None = None
    energy_kwh: float = Field(0.0, ge=0, description="energy delivered to the EV")
    discharged_kwh: float = Field(0.0, ge=0, description="V2G energy taken from the EV")
    peak_kw: float = Field(0.0, ge=0)
    vehicle_id: str | None = None
    fleet_id: str | None = None
    cost_eur: float = Field(0.0, description="energy cost so far at the import price in force "
                            "as each kWh was delivered (EUR)")
    reason: str | None = Field(None, description="why it stopped (unplugged, cloud, ...)")
    held: Held | None = Field(
        None, description="`updated` only: why the plan holds it now; absent if not held")


# --- health ------------------------------------------------------------------------------


class DeviceHealth(Model):
    id: str
    kind: str = Field(description="meter, battery, inverter or charger")
    link: Literal["ok", "stale", "offline"]
    errors: int = Field(0, ge=0, description="failed exchanges since start")
    last_error: str | None = None


class CycleStats(Model):
    count: int = Field(ge=0)
    overruns: int = Field(0, ge=0, description="cycles that exceeded their period, plus periods no cycle ran in (a stall)")
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None


class OutboxHealth(Model):
    depth: int = Field(ge=0, description="messages waiting for a PUBACK")
    bytes: int = Field(ge=0)
    oldest_seq: int | None = None
    last_seq: int = Field(ge=0, description="last seq allocated")
    thinned: int = Field(0, ge=0, description="telemetry rows removed by thinning (total)")
    dropped: int = Field(0, ge=0, description="telemetry rows dropped when full (total)")


class UplinkHealth(Model):
    connected: bool
    last_error: str | None = None
    reconnects: int = Field(0, ge=0)
    rejected: int = Field(0, ge=0, description="PUBACKs with a failure reason code")


class BatteryHealth(Model):
    soh_pct: float | None = Field(None, ge=0, le=100)
    alarms: list[str] = Field(default_factory=list)
    soc_pct: float | None = Field(None, ge=0, le=100)
    equivalent_full_cycles: float | None = Field(None, ge=0)
    in_dispatch: bool = Field(True, description="False inside a maintenance window")


class DiskHealth(Model):
    free_bytes: int = Field(ge=0)
    total_bytes: int = Field(ge=0)


class PlannerHealth(Model):
    enabled: bool = True
    active: bool = Field(False, description="a horizon plan guides the control loop now")
    plans: int = Field(0, ge=0, description="plans solved since start")
    failures: int = Field(0, ge=0, description="solves that failed or timed out")
    last_plan_at: datetime | None = None
    last_solve_ms: float | None = None
    last_error: str | None = None


class Health(Message):
    SCHEMA: ClassVar[str] = "sems.health.v1"
    TOPIC: ClassVar[str] = "health"
    KIND: ClassVar[str] = "health"

    reason: Literal["periodic", "change", "startup"] = "periodic"
    devices: list[DeviceHealth] = Field(default_factory=list)
    cycles: CycleStats | None = None
    outbox: OutboxHealth | None = None
    uplink: UplinkHealth | None = None
    battery: BatteryHealth | None = None
    disk: DiskHealth | None = None
    planner: PlannerHealth | None = None
    power_cap_kw: float | None = Field(None, description="cloud power cap in force, if any")
    degraded: list[str] = Field(default_factory=list, description="active degraded modes")


# --- savings -----------------------------------------------------------------------------


class Savings(Message):
    SCHEMA: ClassVar[str] = "sems.savings.v1"
    TOPIC: ClassVar[str] = "savings"
    KIND: ClassVar[str] = "savings"

    period: Literal["15min", "day"]
    start: datetime
    end: datetime
    import_kwh: float = Field(0.0, ge=0)
    export_kwh: float = Field(0.0, ge=0)
    ev_kwh: float = Field(0.0, ge=0, description="energy delivered to EVs")
    pv_kwh: float = Field(0.0, ge=0)
    battery_discharge_kwh: float = Field(0.0, ge=0)
    cost_eur: float = Field(description="what the period cost")
    baseline_cost_eur: float = Field(description="what it would have cost without the agent")
    savings_eur: float
    peak_kw: float = Field(0.0, ge=0)
    co2_kg: float | None = None
    # `day` only, and only with a battery whose capacity and SoC at both ends are known.
    refill_eur: float | None = Field(
        None, ge=0, description="day: what buying the battery's shortfall against the day's "
        "start back costs (demand charge included); already in costEur, 0 when it ended at "
        "or above its start (no credit)")
    battery_start_kwh: float | None = Field(
        None, ge=0, description="day: battery energy when the day began")
    battery_end_kwh: float | None = Field(
        None, ge=0, description="day: battery energy when the day ended")


# --- state and replies -------------------------------------------------------------------


class State(Message):
    """Retained presence. Not stored in the outbox: its `seq` is the station's last
    allocated seq at the time (a high-water mark), not a new number."""

    SCHEMA: ClassVar[str] = "sems.state.v1"
    TOPIC: ClassVar[str] = "state"
    KIND: ClassVar[str] = "state"

    status: Literal["online", "offline"]
    version: str
    started: datetime


class ReplyError(Model):
    code: Literal[
        "invalid_json",
        "too_large",
        "invalid",
        "invalid_id",
        "unknown_command",
        "expired",
        "unsigned",
        "bad_signature",
        "invalid_exp",
        "not_found",
        "unavailable",
        "failed",
    ]
    message: str


class Reply(Message):
    SCHEMA: ClassVar[str] = "sems.reply.v1"
    TOPIC: ClassVar[str] = "reply"
    KIND: ClassVar[str] = "reply"

    command_id: str | None = Field(description="the command's id (null when it had none)")
    command: str = Field(description="the command name from the topic")
    status: Literal["ok", "error"]
    result: dict[str, Any] | None = None
    error: ReplyError | None = None


UPLINK_MESSAGES: tuple[type[Message], ...] = (
    Telemetry,
    SessionEvent,
    Health,
    Savings,
    State,
    Reply,
)


class Envelope(Model):
    schema_: str = Field(alias="schema", description="message schema name and version")
    station_id: str
    seq: int = Field(
        ge=0, description="per station, strictly increasing, survives restarts (state: high-water mark)"
    )
    ts: datetime = Field(description="when the message was committed")


_FULL: dict[type[Message], type[Model]] = {}


def full_model(cls: type[Message]) -> type[Model]:
    """The message as it appears on the wire: envelope fields plus the body."""
    if cls not in _FULL:
        fields: dict[str, Any] = {
            name: (info.annotation, info) for name, info in Envelope.model_fields.items()
        }
        model = create_model(f"{cls.__name__}Message", __base__=cls, **fields)
        model.__doc__ = f"`{cls.TOPIC}`: {(cls.__doc__ or cls.SCHEMA).strip()}"
        _FULL[cls] = model
    return _FULL[cls]


def now() -> datetime:
    return datetime.now(UTC)
