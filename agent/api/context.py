"""What the local API needs from the running agent: the `ApiContext` Protocol.

The daemon implements it over its live state (hardware mode); `agent.app.virtual_station.VirtualStation`
implements it when chargers are known only through the API. The API never reaches into
the control loop or the drivers directly: everything goes through these methods, so the
same routers serve both modes and the tests can run against either.

Views are frozen dataclasses in the agent's units (kW, kWh, ISO-8601 UTC strings) so a
handler cannot mutate live state by accident.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

import sqlite_utils

from agent.api.models import StationConfig

if TYPE_CHECKING:
    from agent.uplink import Uplink


class ApiError(Exception):
    """Base of the errors an ApiContext raises for a caller's mistake (never for a bug)."""


class UnknownConnector(ApiError):
    """No such charger, or connector index outside 1..connectors (HTTP 404)."""


class ConnectorBusy(ApiError):
    """The connector already has an active session (HTTP 409)."""


class UnknownSession(ApiError):
    """No active session with this id (HTTP 404)."""


class NotFound(ApiError):
    """A fleet record (scheduled session, optimization) that does not exist (HTTP 404)."""


class NotSupported(ApiError):
    """The operation makes no sense in this mode, e.g. creating a session on a
    hardware charger whose EV presence comes from the connector state (HTTP 409)."""


class FieldError(ApiError):
    """One field of a valid-looking request is wrong given the stored state (HTTP 400,
    answered in the same shape as a validation error: field, reason, errors)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class NewSession:
    """What `ApiContext.create_session` needs: a connector and the vehicle's limits."""

    charger_id: str
    idx: int
    vehicle_max_kw: float
    kind: Literal["charging", "v2g"] = "charging"
    vehicle_id: str | None = None
    fleet_id: str | None = None


@dataclass(frozen=True)
class SessionView:
    """One active session, whichever way it was created."""

    session_id: str
    charger_id: str
    idx: int
    allocated_kw: float  # the limit in force now (what the EV may draw)
    vehicle_max_kw: float | None
    consumed_kw: float | None  # last measured or reported power
    source: Literal["api", "hardware"]
    kind: Literal["charging", "v2g"] = "charging"
    started_at: str = ""
    energy_kwh: float = 0.0
    cost_eur: float = 0.0  # energy so far at the import price in force as it was delivered
    binding: str | None = None  # which limit stopped it: vehicle, cap, charger, station, minimum, circuit
    vehicle_id: str | None = None
    fleet_id: str | None = None
    held: dict[str, Any] | None = None  # why the horizon plan holds it (allocator.guidance.Hold)


@dataclass(frozen=True)
class ConnectorView:
    charger_id: str
    idx: int
    state: str  # IEC 61851 A-F for hardware, "occupied"/"free" for API chargers
    session_id: str | None
    limit_kw: float
    power_kw: float | None
    binding: str | None
    # Why the horizon plan holds its session below what it could draw, or None:
    # `Hold.as_dict()` (reason price|peak|schedule|v2g|grid|charger|plan, until, figures).
    held: dict[str, Any] | None = None
    # Its session's phase count and where it comes from: "1-phase (measured)" learned from
    # the charger's per-conductor currents, "3-phase (configured)" the charger's own.
    phases: str | None = None
    # The operator CSMS's limit on it in force (OCPP local controller mode), or None.
    csms_cap_kw: float | None = None


@dataclass(frozen=True)
class StationView:
    """The latest frozen picture of the station (one control cycle's)."""

    station_id: str
    ts: str
    grid_capacity_kw: float
    grid_power_kw: float | None  # > 0 import; None when no meter (API mode estimates it)
    base_load_kw: float | None
    pv_power_kw: float | None
    battery_soc: float | None  # percent
    battery_power_kw: float | None  # > 0 discharging
    ev_power_kw: float
    connectors: tuple[ConnectorView, ...]
    cycles: int  # control cycles completed since start
    cycle_ms: dict[str, float] = field(default_factory=dict)  # p50, p99, max
    overruns: int = 0
    degraded: tuple[str, ...] = ()  # active degraded modes, e.g. "grid_meter_stale"
    power_cap_kw: float | None = None  # demand-response cap in force, if any
    mode: Literal["hardware", "api"] = "hardware"
    # the electrical tree: each circuit's estimated EV load per phase against its ratings
    # (agent/control/tree.py circuit_loads)
    circuits: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class DeviceView:
    name: str
    kind: str  # meter, battery, inverter, charger
    endpoint: str  # "tcp://127.0.0.1:5020#1", "rtu:///dev/ttyUSB0@9600#3"
    state: Literal["online", "stale", "offline"]
    latency_ms_p50: float | None
    latency_ms_p99: float | None
    errors: dict[str, int]
    last_error: str | None
    last_ok: str | None  # ISO timestamp of the last good read
    missing: str | None = None  # SunSpec models the profile reads but the device lacks
    ocpp: dict[str, Any] | None = None  # OCPP chargers: OcppCharger.describe()


@dataclass(frozen=True)
class DependencyState:
    """One line of /api/v1/health: `devices`, `broker`, `store`, ..."""

    name: str
    state: Literal["ok", "degraded", "down", "disabled"]
    detail: str = ""


def broker_state(uplink: Uplink | None) -> DependencyState:
    """The `broker` line of /health: the MQTT uplink's connection, or disabled without one."""
    if uplink is None:
        return DependencyState("broker", "disabled", "no [mqtt] configured")
    st = uplink.status
    return DependencyState(
        "broker", "ok" if st.connected else "degraded",
        "connected" if st.connected else (st.last_error or "connecting"),
    )  # fmt: skip


@dataclass(frozen=True)
class UplinkView:
    connected: bool
    outbox_rows: int
    outbox_bytes: int
    dropped: int
    last_ack: str | None
    broker: str | None = None  # host:port, and whether TLS is on
    last_error: str | None = None  # why the last connection failed or dropped
    reconnects: int = 0


def uplink_view(uplink: Uplink, last_ack: str | None) -> UplinkView:
    """The uplink as `sems outbox` shows it: where it connects, whether it is, and why not."""
    st = uplink.status
    stats = uplink.outbox.stats()
    m = uplink.settings
    tls = "TLS" if getattr(m, "tls_ca_file", None) is not None else "no TLS"
    return UplinkView(
        connected=st.connected, outbox_rows=stats.depth, outbox_bytes=stats.bytes,
        dropped=stats.dropped, last_ack=last_ack, broker=f"{m.host}:{m.port} ({tls})",
        last_error=st.last_error, reconnects=st.reconnects,
    )  # fmt: skip


class ApiContext(Protocol):
    """The running agent, as the local API sees it. Implementations must be cheap to call
    from the event loop (no blocking I/O beyond SQLite on the local store)."""

    def now(self) -> datetime:
        """The agent's wall clock (injected, so tests control it)."""

    def battery(self) -> dict[str, Any] | None:
        """Stationary battery state and health (soc, soh, cycles, throughput_kwh, alerts,
        maintenance), or None when the station has no battery."""

    def savings(self) -> dict[str, Any] | None:
        """The savings ledger's summary (agent.energy.savings: cost, baseline, savings, efficiency),
        or None when no ledger is kept in this mode."""

    # --- station configuration (Electra shape) ---
    def station_config(self) -> StationConfig: ...

    def replace_station_config(self, config: StationConfig) -> None:
        """Apply a validated config atomically; sessions created through the API are dropped
        (as Electra does). Raise ApiError if it cannot be applied (old config stays)."""

    # --- live state ---
    def station_view(self) -> StationView: ...

    def sessions(self) -> list[SessionView]:
        """Active sessions in arrival order."""

    def devices(self) -> list[DeviceView]: ...

    def ocpp_log(self, charge_point_id: str, limit: int) -> list[dict[str, Any]]:
        """The last `limit` OCPP frames of that charge point, oldest first (NotFound if no
        OCPP charger has this id)."""

    def dependencies(self) -> list[DependencyState]: ...

    def uplink(self) -> UplinkView | None:
        """None when no uplink is configured."""

    def plan_view(self) -> dict[str, Any] | None:
        """The rolling plan guiding the control loop from now on (agent.energy.planning
        PlannerTask.view), or None when planning is off or no plan has succeeded yet."""

    # --- sessions created through the API ---
    def create_session(self, new: NewSession) -> SessionView:
        """Start a session; its allocation is what it may draw now without overrunning the
        others. Raises UnknownConnector, ConnectorBusy or NotSupported."""

    def report_consumption(self, session_id: str, consumed_kw: float) -> SessionView:
        """Record what a session draws (caps it near that, DESIGN.md). Raises UnknownSession."""

    def stop_session(self, session_id: str) -> None:
        """End an active session (API-created or hardware). Raises UnknownSession."""

    # --- collaborators (None when absent in this mode); plain attributes satisfy these ---
    @property
    def store(self) -> sqlite_utils.Database: ...

    @property
    def signals(self) -> Any | None:
        """agent.store.signals store (tariffs, caps, schedules, maintenance), when available."""

    @property
    def planner(self) -> Any | None:
        """Something with the allocator.planner interface, when available."""


def as_dict(view: Any) -> dict[str, Any]:
    """A view as plain JSON-able data (for the CLI's --json and the fleet resources)."""
    from dataclasses import asdict

    return asdict(view)
