"""The one read model of the running station: what the local API, the uplink, `/metrics`
(through the API), systemd's status line and `sems status` read, and nothing else.

The control loop owns a `StationState` and replaces its per-cycle part (`CycleState`, frozen)
once per cycle, in the record phase (agent/control/loop.py), so a reader on the same event
loop always sees one whole cycle: the decision (snapshot, targets, budget modes, sessions,
held), the limits in force per connector, the active sessions, why the store refuses
writes. Beside it, what does not change per cycle or is read on demand, through read-only
ports given once: the settings in force (swapped with a station reconfiguration), the cycle
statistics, the devices' health and descriptions (`DeviceReadout`: each `Health` is already
a frozen value, made when asked), and the energy observers' public status (planner, battery
watch, savings ledger: `PlannerReadout`, `BatteryReadout`, `LedgerReadout`).

Readers never reach into the loop, the controller or the devices: commands go through
`StationCommands`, the narrow port the daemon implements (agent/app/commands.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from agent.config.settings import AgentSettings
    from agent.control.decision import Decision
    from agent.control.stats import CycleStats
    from agent.model.snapshot import Snapshot
    from agent.store.signals import StationConfig as CloudStationConfig
    from drivers.health import Health

Key = tuple[str, int]
_NO_LIMITS: Mapping[Key, float | None] = MappingProxyType({})


class ActiveSession(NamedTuple):
    """One active session as it stood at the end of a cycle (the tracker's `Session` is
    updated in place by the next cycle; this copy is not). A named tuple: made for every
    active session every cycle, at C speed (a frozen dataclass took 3x as long)."""

    id: str
    charger_id: str
    connector_idx: int
    started_at: str
    energy_kwh: float
    peak_kw: float
    power_kw: float
    vehicle_max_kw: float | None
    vehicle_id: str | None
    transaction_id: str | None
    status: str
    stopped_at: str | None
    cost_eur: float

    @classmethod
    def of(cls, s: Any) -> ActiveSession:
        """From the tracker's `Session` (agent/control/session_records.py)."""
        return cls(s.id, s.charger_id, s.connector_idx, s.started_at, s.energy_kwh, s.peak_kw,
                   s.power_kw, s.vehicle_max_kw, s.vehicle_id, s.transaction_id, s.status,
                   s.stopped_at, s.cost_eur)  # fmt: skip

    def public(self) -> dict[str, Any]:
        """The same fields as `Session.public()` (the uplink's session events)."""
        return self._asdict()


@dataclass(frozen=True, slots=True)
class CycleState:
    """What one control cycle left: replaced whole, never changed in place."""

    decision: Decision | None = None  # None until the first cycle
    modes: frozenset[str] = frozenset()  # the degraded modes in force
    limits: Mapping[Key, float | None] = field(default_factory=lambda: _NO_LIMITS)  # None: unknown
    sessions: tuple[ActiveSession, ...] = ()  # in the tracker's order
    store_error: str | None = None  # why the store refuses writes (disk full, I/O error)


# --- read-only ports: what the readers may ask of the devices and the observers -----------


class DeviceReadout(Protocol):
    """The station's devices, read only (agent/control/devices.py `DeviceStatus`)."""

    def health(self) -> Mapping[str, Health]:
        """Each device's health now, by configured name (frozen `Health` values)."""
        ...

    def describe(self, name: str) -> dict[str, Any] | None:
        """What the device says of itself (an OCPP charger's link, boot, profiles), if it
        can."""
        ...

    def ocpp_log(self, charge_point_id: str, limit: int) -> list[dict[str, Any]] | None:
        """The last `limit` raw OCPP frames with that charge point; None: no such charger."""
        ...


class PlannerStatusView(Protocol):
    plans: int
    failures: int
    last_plan_at: str | None
    last_solve_ms: float | None
    last_error: str | None
    active: bool


class PlannerReadout(Protocol):
    @property
    def status(self) -> PlannerStatusView: ...

    def view(self, now: datetime) -> dict[str, Any] | None: ...


class BatteryReadout(Protocol):
    @property
    def alerts(self) -> list[dict[str, Any]]: ...

    def report(self, now: datetime) -> dict[str, Any]: ...


class LedgerReadout(Protocol):
    def summary(self) -> dict[str, Any]: ...


class StationCommands(Protocol):
    """What the local API and the uplink may do to the running station (and nothing more)."""

    def stop_session(self, session_id: str, reason: str) -> Any:
        """End an active session now; its final figures (the tracker's `Session`). Raises
        KeyError for an id that is not active."""
        ...

    def reconfigure_now(self, config: CloudStationConfig) -> None:
        """Validate and swap in a station configuration at once (ValueError: the old one
        stays). For the local API, whose handlers run between two cycles."""
        ...

    async def reconfigure(self, config: CloudStationConfig) -> None:
        """The same, swapped in between the next two cycles (the cloud's command)."""
        ...


@dataclass(frozen=True, slots=True)
class EnergyReadouts:
    """The energy observers the loop feeds, as the readers may see them (None: not run)."""

    planner: PlannerReadout | None = None
    battery: BatteryReadout | None = None
    ledger: LedgerReadout | None = None


class StationState:
    """The running station as its readers see it, one cycle at a time.

    `cycle` is replaced whole by the loop's record phase (`record`); `healthy` after each
    cycle; `settings` when a station configuration is swapped in; `energy` once, by the
    loop that feeds those observers (they are built with the uplink hook, which reads this
    state, so they cannot exist before it)."""

    def __init__(
        self,
        settings: AgentSettings,
        stats: CycleStats,
        devices: DeviceReadout | None = None,
    ) -> None:
        self.settings = settings
        self.stats = stats
        self.devices = devices
        self.energy = EnergyReadouts()
        self.cycle = CycleState()
        self.healthy = False

    # --- written by the loop (its record phase) ---------------------------------------------

    def record(
        self,
        decision: Decision | None,
        limits: Mapping[Key, float | None],
        sessions: Iterable[Any],
        store_error: str | None,
    ) -> None:
        """The cycle that just ended (None: the loop as built, before its first cycle, with
        the sessions it resumed): `limits` and `sessions` (the tracker's) copied."""
        self.cycle = CycleState(
            decision=decision,
            modes=decision.budget.modes if decision is not None else frozenset(),
            limits=MappingProxyType(dict(limits)),
            sessions=tuple(map(ActiveSession.of, sessions)),
            store_error=store_error,
        )

    def session_stopped(self, session_id: str) -> None:
        """A session ended by a command between two cycles: gone from the active ones at
        once, as it is from the tracker."""
        c = self.cycle
        kept = tuple(s for s in c.sessions if s.id != session_id)
        if len(kept) != len(c.sessions):
            self.cycle = CycleState(c.decision, c.modes, c.limits, kept, c.store_error)

    # --- read -------------------------------------------------------------------------------

    @property
    def decision(self) -> Decision | None:
        return self.cycle.decision

    @property
    def modes(self) -> frozenset[str]:
        return self.cycle.modes

    @property
    def limits(self) -> Mapping[Key, float | None]:
        return self.cycle.limits

    @property
    def sessions(self) -> tuple[ActiveSession, ...]:
        return self.cycle.sessions

    @property
    def store_error(self) -> str | None:
        return self.cycle.store_error

    @property
    def snapshot(self) -> Snapshot | None:
        d = self.cycle.decision
        return d.snapshot if d else None

    def device_health(self) -> Mapping[str, Health]:
        return self.devices.health() if self.devices is not None else {}

    def telemetry(self) -> dict:
        """Grid, PV, battery and each connector's limit and power (kW)."""
        d = self.decision
        if d is None:
            return {}
        snap = d.snapshot
        return {
            "gridPower": snap.grid_kw,
            "gridCapacity": self.settings.station.grid_capacity_kw,
            "pvPower": snap.pv_kw,
            "battery": None
            if snap.battery is None
            else {"soc": snap.battery.soc, "power": snap.battery.power_kw},
            "batterySetpoint": d.battery_kw,
            "connectors": [
                {
                    "chargerId": c.charger_id,
                    "idx": c.idx,
                    "state": c.state,
                    "power": c.power_kw,
                    "limit": d.targets.get((c.charger_id, c.idx)),
                }
                for c in snap.connectors()
            ],
            "modes": sorted(d.budget.modes),
        }

    def summary(self) -> str:
        """One line for systemd's STATUS= and `sems status`."""
        d = self.decision
        if d is None:
            return "starting"
        grid = "stale" if d.snapshot.grid_kw is None else f"{d.snapshot.grid_kw:.1f} kW"
        cs = self.stats.summary()["cycle_ms"]
        modes = f"; degraded: {', '.join(sorted(d.budget.modes))}" if d.budget.modes else ""
        return (
            f"grid {grid} of {self.settings.station.grid_capacity_kw:g} kW, "
            f"{len(d.sessions)} sessions, cycle p99 {cs['p99']:.1f} ms{modes}"
        )
