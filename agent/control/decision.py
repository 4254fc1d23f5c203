"""What one control cycle decided: typed values, no behaviour, no I/O.

`Decision` is the controller's whole output for one snapshot. Per connector it holds one
`ConnectorDecision` (the limit in force, what the EV draws, its session and its target)
instead of parallel dicts keyed by connector; the allocator's answer is typed too
(`allocations`, `binding`, `battery_kw`, `grid_kw`), and `result` / `request` render the
DESIGN.md JSON contract on demand for the API, the uplink and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.control.apply import ApplyPlan, Key
from agent.control.budget import BudgetInputs
from agent.control.phase_learning import PhaseCount
from agent.control.sessions import Session
from agent.control.v2g import V2gOrders
from agent.model.snapshot import Snapshot
from allocator.guidance import Hold


@dataclass(frozen=True, slots=True)
class SessionRow:
    """One session as the allocator was asked to serve it (kW)."""

    session_id: str
    charger_id: str
    idx: int
    vehicle_max_kw: float
    power_cap_kw: float | None
    min_power_kw: float
    priority: float
    phases: int = 0  # what the allocator books it on; 0: its charger's phases

    @property
    def key(self) -> Key:
        return (self.charger_id, self.idx)


@dataclass(frozen=True, slots=True)
class AllocationInputs:
    """What the allocator was given this cycle, kept for the record (API, health, tests).
    The cycle fills the kernel's arrays directly; `as_request()` renders the same inputs
    in the DESIGN.md JSON contract when someone asks."""

    station_id: str
    grid_capacity_kw: float
    base_load_kw: float
    pv_kw: float
    battery: dict | None
    chargers: tuple[tuple[str, float, int], ...]  # (id, max kW, connectors)
    sessions: tuple[SessionRow, ...]  # in the order given to the allocator
    v2g_supply_kw: float = 0.0  # confirmed V2G discharge, counted like PV

    def as_request(self) -> dict:
        sessions = []
        for r in self.sessions:
            entry: dict[str, Any] = {
                "sessionId": r.session_id,
                "connectorId": {"chargerId": r.charger_id, "idx": r.idx},
                "vehicleMaxPower": r.vehicle_max_kw,
                "minPower": r.min_power_kw,
            }
            if r.power_cap_kw is not None:
                entry["powerCap"] = r.power_cap_kw
            if r.priority:
                entry["priority"] = r.priority
            if r.phases:
                entry["phases"] = r.phases
            sessions.append(entry)
        request: dict[str, Any] = {
            "stationId": self.station_id,
            "gridCapacity": self.grid_capacity_kw,
            "baseLoad": self.base_load_kw,
            "pvPower": self.pv_kw + self.v2g_supply_kw,  # what the kernel was given
            "chargers": [
                {"id": cid, "maxPower": kw, "connectors": n} for cid, kw, n in self.chargers
            ],
            "sessions": sessions,
        }
        if self.battery is not None:
            request["battery"] = dict(self.battery)
        return request


@dataclass(slots=True)
class ConnectorDecision:
    """One connector of a reachable charger this cycle."""

    key: Key
    limit_kw: float | None  # in force as the cycle began (None: unknown)
    drawing_kw: float  # measured
    session: Session | None = None
    target_kw: float = 0.0  # the allocator's share (< 0: a V2G discharge)
    drawing_ts: float | None = None  # when drawing_kw was measured, if not this cycle


@dataclass(frozen=True, slots=True)
class Decision:
    snapshot: Snapshot
    budget: BudgetInputs
    inputs: AllocationInputs  # what the allocator was asked
    allocations: dict[str, float]  # session id -> kW, the allocator's answer
    binding: dict[str, str]  # session id -> what bounds its allocation
    battery_kw: float  # the allocator's battery power (> 0 discharges)
    grid_kw: float  # the import the allocation implies
    connectors: tuple[ConnectorDecision, ...]  # reachable chargers' connectors
    targets: dict[Key, float]  # the same connectors' targets, as the apply step takes them
    plan: ApplyPlan
    heartbeats: tuple[str, ...]  # chargers to ping (no write to them this cycle)
    battery_setpoint_kw: float | None  # None: nothing to write this cycle
    sessions: tuple[Session, ...]
    caps: dict[str, float] = field(default_factory=dict)
    power_cap_kw: float | None = None  # demand-response cap in force (agent/store/signals.py)
    planned: bool = False  # a horizon plan narrowed this cycle's allocation
    # Sessions the plan holds below what they could draw this cycle, and why
    # (agent/control/held.py): the live read model's `held`, beside `binding`.
    held: dict[str, Hold] = field(default_factory=dict)
    battery_available: bool = True  # False inside a maintenance window
    v2g: V2gOrders = field(default_factory=V2gOrders)  # this cycle's V2G discharges
    # Each session's phase count, learned or configured (agent/control/phase_learning.py).
    phases: dict[Key, PhaseCount] = field(default_factory=dict)
    # Connectors whose next sample would end a fall held out of the headroom
    # (agent/control/unseen_drops.py), a cap's wait (caps.py) or an unproven raise's undrawn
    # part holding back increases (controller.py `_unproven_raises`): their chargers are
    # asked for one where they can.
    samples_wanted: tuple[Key, ...] = ()
    # Phase switch registers to write this cycle, after the limits (agent/control/
    # phase_switch.py): (connector, 1 or 3).
    phase_switches: tuple[tuple[Key, int], ...] = ()

    @property
    def request(self) -> dict:
        """The allocator's inputs in the DESIGN.md JSON contract (built on demand)."""
        return self.inputs.as_request()

    @property
    def result(self) -> dict:
        """The allocator's answer in the DESIGN.md JSON contract (built on demand)."""
        return {
            "allocations": self.allocations,
            "batteryPower": self.battery_kw,
            "gridPower": self.grid_kw,
            "binding": self.binding,
        }
