"""The control loop: the controller (decisions, no I/O) and the periodic task (I/O).

`Controller.decide(snapshot)` turns one frozen snapshot into a `Decision` (allocation,
ordered limit writes, heartbeats, battery setpoint) and `Controller.commit()` records what
the devices acknowledged. Tests drive these two cycle by cycle with hand-made snapshots.
`ControlLoop` adds the I/O around them: concurrent reads with a deadline, the snapshot,
the writes, the statistics, and the watchdog ping after a healthy cycle.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from agent.app.memory import release_compiler_pages
from agent.app.sdnotify import Notifier
from agent.config.settings import AgentSettings
from agent.control.apply import ApplyPlan, Key, execute, plan_writes
from agent.control.battery_order import ordered_setpoint
from agent.control.budget import BudgetInputs, WindowMax, budget_inputs
from agent.control.caps import CapTracker, PauseRotation
from agent.control.comeback import LIMIT_EPS_KW, rewrite_fallback
from agent.control.devices import Reader, StationDevices
from agent.control.plausibility import Plausibility
from agent.control.sessions import Session, SessionTracker
from agent.control.startup import StartupGate
from agent.control.stats import CycleStats
from agent.control.v2g import V2gDispatch, V2gOrders
from agent.model.clock import Clock, iso
from agent.model.snapshot import Snapshot
from allocator.guidance import Guidance
from allocator.request import BINDING_NAMES

if TYPE_CHECKING:
    from agent.energy.battery_watch import BatteryWatch
    from agent.energy.ledger_recorder import LedgerRecorder
    from agent.energy.planning import PlannerTask
    from agent.energy.signals import Signals

log = logging.getLogger(__name__)
MAX_UNLOGGED = 1000  # events kept in memory while the store refuses writes

# Hooks the daemon wires in (all optional; each is called once per cycle, must be cheap).
GuideFn = Callable[[datetime], Guidance | None]  # the horizon plan's current slot
IntervalFn = Callable[[datetime], tuple[float, float] | None]  # (kWh imported, h left)
AvailableFn = Callable[[datetime], bool]  # battery in dispatch (False: maintenance)


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


@dataclass(frozen=True, slots=True)
class Decision:
    snapshot: Snapshot
    budget: BudgetInputs
    inputs: AllocationInputs  # what the allocator was asked
    result: dict  # its answer: allocations, batteryPower, gridPower, binding
    targets: dict[Key, float]
    plan: ApplyPlan
    heartbeats: tuple[str, ...]  # chargers to ping (no write to them this cycle)
    battery_setpoint_kw: float | None  # None: nothing to write this cycle
    sessions: tuple[Session, ...]
    caps: dict[str, float] = field(default_factory=dict)
    power_cap_kw: float | None = None  # demand-response cap in force (agent/energy/signals.py)
    planned: bool = False  # a horizon plan narrowed this cycle's allocation
    battery_available: bool = True  # False inside a maintenance window
    v2g: V2gOrders = field(default_factory=V2gOrders)  # this cycle's V2G discharges

    @property
    def request(self) -> dict:
        """The allocator's inputs in the DESIGN.md JSON contract (built on demand)."""
        return self.inputs.as_request()


class Controller:
    """Decisions without I/O. The allocator runs on arrays allocated here once (sized for
    every connector of the station) and filled in place each cycle."""

    def __init__(
        self,
        settings: AgentSettings,
        sessions: SessionTracker,
        *,
        signals: Signals | None = None,
        guide: GuideFn | None = None,
        interval: IntervalFn | None = None,
        battery_available: AvailableFn | None = None,
        v2g: V2gDispatch | None = None,
    ) -> None:
        from allocator.arrays import StationArrays  # numba: only once a controller exists

        self.sessions = sessions
        self.signals = signals
        self.v2g = v2g
        self.guide = guide
        self.interval = interval
        self.battery_available = battery_available
        c = settings.control
        st = settings.station
        self._charger_index = {ch.id: j for j, ch in enumerate(st.chargers)}
        self.arrays = StationArrays(
            len(st.chargers), max(1, sum(ch.connectors for ch in st.chargers))
        )
        self.arrays.n_chargers = len(st.chargers)
        self.configure_station(settings)
        self.limits: dict[Key, float | None] = {
            (ch.id, i): None for ch in st.chargers for i in range(1, ch.connectors + 1)
        }
        self.min_kw = {
            (ch.id, i): ch.min_power_kw for ch in st.chargers for i in range(1, ch.connectors + 1)
        }
        self.last_power: dict[Key, float] = {}
        self.last_contact: dict[str, float] = {}
        self.unreachable: set[str] = set()  # chargers unreachable in the last cycle
        self.base_history = WindowMax(c.base_load_window_s)
        self.caps = CapTracker(c.probe_margin_kw, c.probe_margin_fraction, c.cap_after_s)
        self.rotation = PauseRotation(c.max_pause_s)
        self.battery_setpoint: float | None = None
        self._battery_written_at = float("-inf")
        # V2G discharges waiting for the headroom to end (apply.py): key -> since when.
        self.ends_waiting: dict[Key, float] = {}
        b = st.battery
        self._battery_cfg = (b.min_soc, b.max_charge_kw, b.max_discharge_kw) if b else None

    def configure_station(self, settings: AgentSettings) -> None:
        """(Re)derive what depends on the station's ratings: at start and when a new station
        configuration (same chargers and connectors, new capacity or ratings) is swapped in
        between two cycles (agent/config/station_config.py)."""
        self.s = settings
        st = settings.station
        self.chargers = {ch.id: ch for ch in st.chargers}
        self._charger_rows = tuple((ch.id, ch.max_power_kw, ch.connectors) for ch in st.chargers)
        for j, ch in enumerate(st.chargers):
            self.arrays.set_charger(j, ch.max_power_kw)
        self.fallback_per_connector = {
            (ch.id, i): settings.fallback_kw(ch) / ch.connectors
            for ch in st.chargers
            for i in range(1, ch.connectors + 1)
        }

    @property
    def refresh_s(self) -> float:
        return self.s.control.comm_timeout_s * self.s.control.refresh_fraction

    def decide(self, snap: Snapshot) -> Decision:
        c = self.s.control
        t = snap.t
        if self.v2g is not None:  # before the tracker: a session ending now keeps its kWh
            self.v2g.account(snap, self.sessions.active)
        sessions = self.sessions.update(snap)
        by_key = {(x.charger_id, x.connector_idx): x for x in sessions}

        current: dict[Key, float | None] = {}
        drawing: dict[Key, float] = {}
        reachable: dict[str, bool] = {}
        in_fallback: set[str] = set()  # chargers showing less than we wrote (comeback.py)
        for ch in snap.chargers:
            reachable[ch.id] = ch.reachable
            if not ch.reachable:
                self.unreachable.add(ch.id)
                continue
            if ch.id in self.unreachable:  # back: its own fallback may be in force
                self.unreachable.discard(ch.id)
                in_fallback.add(ch.id)
            for conn in ch.connectors:
                key = (ch.id, conn.idx)
                if conn.limit_kw is not None and key in self.limits:
                    # The charger's own register is the truth: it shows a fallback taken
                    # while we were silent, or a write that did not land.
                    before = self.limits[key]
                    if before is not None and conn.limit_kw < before - LIMIT_EPS_KW:
                        in_fallback.add(ch.id)
                    self.limits[key] = conn.limit_kw
                current[key] = self.limits.get(key)
                drawing[key] = conn.power_kw
                self.last_power[key] = conn.power_kw

        battery_available = (
            self.battery_available(snap.ts) if self.battery_available is not None else True
        )
        budget = budget_inputs(
            snap,
            self.base_history,
            self.s.station.pessimistic_base_load_kw,
            self.limits,
            self.last_power,
            self._battery_cfg if battery_available else None,
        )

        # Caps from measured consumption, then the allocator's order (rotation).
        live = [x for x in sessions if reachable.get(x.charger_id, False)]
        caps: dict[str, float] = {}
        for x in live:
            key = (x.charger_id, x.connector_idx)
            cap = self.caps.update(
                x.id, drawing.get(key, 0.0), current.get(key) or 0.0, self.min_kw[key], t
            )
            if cap is not None:
                caps[x.id] = cap
        self.caps.forget(x.id for x in live)
        order = self.rotation.order([x.id for x in live], t)
        by_id = {x.id: x for x in live}

        # The station's ceiling: grid capacity and a demand-response cap in force (obeyed
        # from this cycle on, plan or no plan), less the margin the apply step keeps free;
        # then the plan's import cap for this slot (economic: no margin below it).
        safety_ceiling = self.s.station.grid_capacity_kw
        power_cap = self.signals.active_power_cap(snap.ts) if self.signals is not None else None
        if power_cap is not None:
            safety_ceiling = min(safety_ceiling, power_cap)
        grid = max(0.0, safety_ceiling - c.headroom_margin_kw)
        guidance = self.guide(snap.ts) if self.guide is not None else None
        if guidance is not None:
            so_far = self.interval(snap.ts) if self.interval is not None else None
            grid = min(grid, guidance.grid_cap(*(so_far or (None, None))))

        v2g = (
            self.v2g.dispatch(snap, live, self.chargers, guidance)
            if self.v2g is not None
            else V2gOrders()
        )
        inputs = self._fill(budget, grid, [by_id[sid] for sid in order], caps, guidance, v2g)
        self.arrays.solve()
        result = self._result(inputs)
        allocations: dict[str, float] = result["allocations"]
        binding: dict[str, str] = result["binding"]
        self.rotation.observe(
            [sid for sid, kw in allocations.items() if kw <= 0 and binding.get(sid) == "minimum"],
            t,
        )

        targets: dict[Key, float] = {}
        for key in current:
            s = by_key.get(key)
            targets[key] = allocations.get(s.id, 0.0) if s is not None else 0.0
            if s is not None and s.id in v2g.discharge_kw:
                targets[key] = -v2g.discharge_kw[s.id]

        if snap.grid_kw is not None and snap.grid_age_s > c.period_s:
            # A reading from an earlier cycle confirms nothing: the EVs may have ramped
            # up since. As if at the ceiling: decreases go out, increases wait.
            import_kw = max(snap.grid_kw, safety_ceiling)
        elif snap.grid_kw is not None:
            import_kw = snap.grid_kw
        else:  # no measurement: the safe budget's base load plus what the EVs draw
            import_kw = budget.base_load_kw + sum(drawing.values())
        def plan_for(import_kw: float) -> ApplyPlan:
            return plan_writes(
                targets,
                current,
                drawing,
                self.min_kw,
                self.fallback_per_connector,
                import_kw=import_kw,
                capacity_kw=safety_ceiling,
                margin_kw=c.headroom_margin_kw,
                deadband_kw=c.deadband_kw,
                now=t,
                meter_fresh=snap.grid_kw is not None,
                ends_waiting=self.ends_waiting,
                end_timeout_s=self.s.v2g.end_timeout_s,
            )

        plan = plan_for(import_kw)
        # The battery giving less raises the import: it goes first out of the headroom,
        # the EVs' increases share what is left (agent/control/battery_order.py).
        battery_present = snap.battery.power_kw if snap.battery is not None else self.battery_setpoint
        battery_sp = ordered_setpoint(
            self._battery_setpoint(budget, result, t), battery_present, plan.headroom_kw
        )
        if battery_sp is not None and battery_present is not None and battery_sp < battery_present:
            plan = plan_for(import_kw + battery_present - battery_sp)
        plan = rewrite_fallback(plan, in_fallback, current)
        written = {w.charger_id for w in plan.writes}
        heartbeats = tuple(
            cid
            for cid, ok in reachable.items()
            if ok
            and cid not in written
            and t - self.last_contact.get(cid, float("-inf")) >= self.refresh_s
        )
        return Decision(
            snapshot=snap,
            budget=budget,
            inputs=inputs,
            result=result,
            targets=targets,
            plan=plan,
            heartbeats=heartbeats,
            battery_setpoint_kw=battery_sp,
            sessions=tuple(sessions),
            caps=caps,
            power_cap_kw=power_cap,
            planned=guidance is not None,
            battery_available=battery_available,
            v2g=v2g,
        )

    def _fill(
        self,
        budget: BudgetInputs,
        grid_kw: float,
        ordered: list[Session],
        caps: dict[str, float],
        guidance: Guidance | None,
        v2g: V2gOrders,
    ) -> AllocationInputs:
        """Write this cycle's inputs into the kernel's arrays (no request dict, no parsing)."""
        a = self.arrays
        grid = max(0.0, grid_kw)
        b = budget.battery
        if b is not None and guidance is not None:
            charge, discharge = guidance.battery_limits(b["maxChargePower"], b["maxDischargePower"])
            b = {**b, "maxChargePower": charge, "maxDischargePower": discharge}
        a.set_station(
            grid_capacity=grid,
            base_load=budget.base_load_kw,
            pv_power=budget.pv_kw + v2g.supply_kw,
            battery_max_discharge=b["maxDischargePower"] if b else 0.0,
            battery_max_charge=b["maxChargePower"] if b else 0.0,
            battery_soc=b["soc"] if b else 0.0,
            battery_min_soc=b["minSoc"] if b else 0.0,
        )
        rows = []
        for row, x in enumerate(ordered):
            ch = self.chargers[x.charger_id]
            cap = caps.get(x.id)
            priority = 0.0
            if x.id in v2g.guarded:  # departure guard: charge now, whatever the plan said
                priority = 1.0
            elif guidance is not None:
                planned = guidance.session_cap(x.id)
                if planned is not None:
                    cap = planned if cap is None else min(cap, planned)
                    priority = 1.0 if planned > 0 else 0.0
            vmax = x.max_kw(ch.max_power_kw)
            a.set_session(
                row,
                charger=self._charger_index[x.charger_id],
                vehicle_max=vmax,
                power_cap=math.inf if cap is None else cap,
                min_power=ch.min_power_kw,
                priority=priority,
            )
            rows.append(
                SessionRow(x.id, x.charger_id, x.connector_idx, vmax, cap, ch.min_power_kw, priority)
            )
        a.n_sessions = len(rows)
        return AllocationInputs(
            station_id=self.s.station.id,
            grid_capacity_kw=grid,
            base_load_kw=budget.base_load_kw,
            pv_kw=budget.pv_kw,
            battery=b,
            chargers=self._charger_rows,
            sessions=tuple(rows),
            v2g_supply_kw=v2g.supply_kw,
        )

    def _result(self, inputs: AllocationInputs) -> dict:
        """The kernel's answer keyed by session id (the DESIGN.md result shape)."""
        a = self.arrays
        allocation = a.allocation
        binding = a.binding
        ids = [r.session_id for r in inputs.sessions]
        return {
            "allocations": {sid: float(allocation[i]) for i, sid in enumerate(ids)},
            "batteryPower": a.battery_power,
            "gridPower": round(a.grid_power, 6) + 0.0,
            "binding": {sid: BINDING_NAMES[binding[i]] for i, sid in enumerate(ids)},
        }

    def _battery_setpoint(self, budget: BudgetInputs, result: dict, t: float) -> float | None:
        if self._battery_cfg is None:
            return None
        # Stale BMS or stale grid meter: the battery is not counted on, so it idles.
        sp = float(result.get("batteryPower", 0.0)) if budget.battery is not None else 0.0
        prev = self.battery_setpoint
        if (
            prev is None
            or abs(sp - prev) >= self.s.control.deadband_kw
            or (sp == 0.0 and prev != 0.0)
            or t - self._battery_written_at >= self.refresh_s
        ):
            return round(sp, 3)
        return None

    def commit(
        self,
        decision: Decision,
        writes: Mapping[Key, bool],
        heartbeats: Mapping[str, bool],
        battery_ok: bool | None,
    ) -> None:
        """Record what the devices acknowledged; a failed write leaves the limit unknown."""
        t = decision.snapshot.t
        self.ends_waiting = dict(decision.plan.ends_waiting)
        for w in decision.plan.writes:
            key = (w.charger_id, w.idx)
            if writes.get(key):
                self.limits[key] = w.kw
                self.last_contact[w.charger_id] = t
            else:
                self.limits[key] = None
        for cid, ok in heartbeats.items():
            if ok:
                self.last_contact[cid] = t
        if battery_ok and decision.battery_setpoint_kw is not None:
            self.battery_setpoint = decision.battery_setpoint_kw
            self._battery_written_at = t


class UplinkHook(Protocol):
    """Integration point for the MQTT uplink (agent/uplink/): the loop hands it session
    events as they happen, telemetry every `telemetry_interval_s` and health every
    `health_interval_s`; the uplink commits them to its outbox. Must not block."""

    def enqueue(self, kind: str, payload: dict) -> None: ...


class AgentState:
    """Read-only view of the running agent for the uplink, the local API and the CLI.

    The loop replaces `decision` whole at the end of each cycle, so a reader on the same
    event loop always sees one consistent cycle."""

    def __init__(self, settings: AgentSettings, stats: CycleStats, devices: StationDevices):
        self.settings = settings
        self.stats = stats
        self._devices = devices
        self.decision: Decision | None = None
        self.modes: frozenset[str] = frozenset()
        self.healthy = False

    @property
    def snapshot(self) -> Snapshot | None:
        return self.decision.snapshot if self.decision else None

    @property
    def allocations(self) -> dict[str, float]:
        return dict(self.decision.result["allocations"]) if self.decision else {}

    @property
    def bindings(self) -> dict[str, str]:
        return dict(self.decision.result.get("binding", {})) if self.decision else {}

    @property
    def sessions(self) -> tuple[Session, ...]:
        return self.decision.sessions if self.decision else ()

    def device_health(self) -> dict[str, Any]:
        return self._devices.health()

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
            "batterySetpoint": d.result.get("batteryPower"),
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


class ControlLoop:
    def __init__(
        self,
        settings: AgentSettings,
        devices: StationDevices,
        controller: Controller,
        clock: Clock,
        stats: CycleStats | None = None,
        notifier: Notifier | None = None,
        uplink: UplinkHook | None = None,
        *,
        planner: PlannerTask | None = None,
        ledger: LedgerRecorder | None = None,
        battery: BatteryWatch | None = None,
    ) -> None:
        self.s = settings
        self.planner = planner
        self.ledger = ledger
        self.battery = battery
        self._observer_failed: set[str] = set()
        self.devices = devices
        self.controller = controller
        self.clock = clock
        self.stats = stats or CycleStats()
        self.notifier = notifier
        self.uplink = uplink
        self.reader = Reader(devices, clock, self.stats)
        self.state = AgentState(settings, self.stats, devices)
        # Safety hook (agent/control/startup.py): a (re)start writes nothing before it has
        # read the station, and its first writes only lower.
        self.plausibility = Plausibility(controller.chargers)
        self.startup = StartupGate(has_battery=settings.station.battery is not None,
                                   timeout_s=settings.control.stale_after_s)  # fmt: skip
        self._last_ping = float("-inf")
        self._stalled = False  # the last wake-up was late: no ping after the next cycle
        self._last_status = float("-inf")
        self._last_telemetry = float("-inf")
        self._last_health = float("-inf")
        self._event_error: str | None = None
        self._unlogged: list[dict] = []  # events the store refused, oldest first
        self._event_retry_at = float("-inf")
        # Run after every cycle, before the sleep (the daemon's station-config swap and the
        # API-only station's step): between two cycles, so never in the middle of one.
        self.between_cycles: list[Callable[[], None]] = []

    def configure_station(self, settings: AgentSettings) -> None:
        """Swap in a validated station configuration between two cycles: every part that
        derives from it re-derives itself, and a V2G charger whose profile cannot take
        negative limits stays downgraded (as at start)."""
        self.s = self.state.settings = settings
        self.controller.configure_station(settings)
        self.plausibility.chargers = self.controller.chargers
        if self.planner is not None:
            self.planner.configure_station(settings)
        if self.ledger is not None:
            self.ledger.s = settings
        self._check_bidirectional()

    async def start(self) -> None:
        """Give every charger its fallback limit and communication timeout, so the station
        stays under its grid capacity if the agent dies from here on."""
        c = self.s.control

        async def one(ch_id: str) -> None:
            ch = self.controller.chargers[ch_id]
            per_connector = self.s.fallback_kw(ch) / ch.connectors
            try:
                await self.devices.chargers[ch_id].set_fallback(per_connector, c.comm_timeout_s)
                self.controller.last_contact[ch_id] = self.clock.monotonic()
            except Exception as exc:
                log.warning("charger %s: fallback limit not set: %s", ch_id, exc)

        await asyncio.gather(*(one(cid) for cid in self.devices.chargers))
        self._check_bidirectional()
        self.controller.arrays.warm_up()  # compile or load the kernel before the first cycle
        release_compiler_pages()  # LLVM is not needed again: its ~70 MB may leave RAM

    def _check_bidirectional(self) -> None:
        """A charger configured for V2G whose profile refuses negative limits gets none."""
        for cid, ch in list(self.controller.chargers.items()):
            dev = self.devices.chargers.get(cid)
            if ch.v2g and dev is not None and not getattr(dev, "bidirectional", False):
                log.error("charger %s: v2g = true but its profile takes no negative limit "
                          "(bidirectional = true); V2G is off for it", cid)
                self.controller.chargers[cid] = ch.model_copy(update={"v2g": False})

    async def cycle(self) -> Decision:
        period = self.s.control.period_s
        t0 = self.clock.monotonic()
        await self.reader.read_all(t0 + period * self.s.control.read_deadline_fraction)
        snap = self.plausibility.filter(self.reader.snapshot(self.clock.monotonic()))
        decision = self.startup.gate(self.controller.decide(snap))
        if self.plausibility.refused:  # health names the device (plausibility.py)
            decision = replace(decision, budget=replace(
                decision.budget, modes=decision.budget.modes | self.plausibility.modes()))
        writes = await execute(decision.plan, self.devices.chargers)
        beats = await self._heartbeats(decision.heartbeats)
        battery_ok = await self._battery(decision.battery_setpoint_kw)
        self.controller.commit(decision, writes, beats, battery_ok)
        if decision.budget.modes != self.state.modes:
            self._mode_change(self.state.modes, decision.budget.modes)
            self._last_status = float("-inf")  # systemd's STATUS= shows a new mode at once
        self.state.decision = decision
        self.state.modes = decision.budget.modes
        self._observe(decision)
        self.stats.record_cycle(self.clock.monotonic() - t0, period)
        return decision

    def _observe(self, decision: Decision) -> None:
        """Feed the planner, the ledger and the battery watch; none may stop the loop."""
        battery = self.battery
        for name, fn in (
            ("planner", self.planner.notice if self.planner else None),
            ("ledger", self.ledger.observe if self.ledger else None),
            ("battery", (lambda d: battery.observe(d.snapshot)) if battery else None),
        ):
            if fn is None:
                continue
            try:
                fn(decision)
                self._observer_failed.discard(name)
            except Exception:
                if name not in self._observer_failed:  # logged once until it recovers
                    log.exception("%s: observing the cycle failed", name)
                    self._observer_failed.add(name)

    async def run(self, stop: asyncio.Event, max_cycles: int | None = None) -> None:
        """Cycle every period until `stop` is set. An overrun starts the next cycle at once
        (missed slots are skipped, not caught up)."""
        period = self.s.control.period_s
        next_t = self.clock.monotonic()
        n = 0
        while not stop.is_set() and (max_cycles is None or n < max_cycles):
            n += 1
            try:
                await self.cycle()
                self.state.healthy = True
            except Exception:
                # No watchdog ping: if cycles keep failing, systemd restarts the agent,
                # and the chargers' fallback limits keep the station safe meanwhile.
                log.exception("control cycle failed")
                self.state.healthy = False
            self._after_cycle()
            for hook in self.between_cycles:
                try:
                    hook()
                except Exception:
                    log.exception("between-cycles hook failed")
            next_t += period
            now = self.clock.monotonic()
            self._count_missed(now - next_t, period)  # a long cycle or a blocked hook
            if next_t < now:
                next_t = now
            await self._sleep_until(next_t, stop)
            self._count_missed(self.clock.monotonic() - next_t, period)  # woken late

    def _count_missed(self, late_s: float, period: float) -> None:
        """Slots no cycle ran in (the event loop was blocked) are overruns, and no watchdog
        ping follows until a cycle ran on time again (stats.py)."""
        slots = int(late_s // period)
        if slots > 0:
            self.stats.record_missed(slots)
            self._stalled = True

    async def _sleep_until(self, deadline: float, stop: asyncio.Event) -> None:
        # Through the injected clock (a test clock returns at once), cut short by stop.
        sleeper = asyncio.ensure_future(self.clock.sleep_until(deadline))
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in (sleeper, stopper):
            task.cancel()

    def _after_cycle(self) -> None:
        t = self.clock.monotonic()
        if self._unlogged and t >= self._event_retry_at:
            self._log_events()
        n = self.notifier
        stalled, self._stalled = self._stalled, False
        if n is not None and self.state.healthy and not stalled and n.watchdog_interval_s is not None:
            if t - self._last_ping >= n.watchdog_interval_s / 2:
                n.watchdog()
                self._last_ping = t
        if n is not None and t - self._last_status >= 5.0:
            n.status(self.state.summary())
            self._last_status = t
        if self.uplink is not None and self.state.decision is not None:
            c = self.s.control
            if t - self._last_telemetry >= c.telemetry_interval_s:
                self._enqueue("telemetry", self.state.telemetry())
                self._last_telemetry = t
            if t - self._last_health >= c.health_interval_s:
                self._enqueue("health", self.health_report())
                self._last_health = t

    def health_report(self) -> dict:
        now = self.clock.now()
        d = self.state.decision
        return {
            "stats": self.stats.summary(),
            "modes": sorted(self.state.modes),
            "powerCapKw": d.power_cap_kw if d is not None else None,
            "planner": self.planner.status.as_dict() if self.planner is not None else None,
            "battery": self.battery.report(now) if self.battery is not None else None,
            "savings": self.ledger.summary() if self.ledger is not None else None,
            "failing": sorted(self._observer_failed),
            "devices": {
                name: {
                    "online": h.online,
                    "errors": dict(h.errors),
                    "lastError": h.last_error,
                    "latencyP99Ms": h.latency_p99_ms,
                }
                for name, h in self.devices.health().items()
            },
        }

    def _enqueue(self, kind: str, payload: dict) -> None:
        try:
            assert self.uplink is not None
            self.uplink.enqueue(kind, payload)
        except Exception:  # the uplink must never stop the control loop
            log.exception("uplink enqueue %s failed", kind)

    def _mode_change(self, old: frozenset[str], new: frozenset[str]) -> None:
        for mode in sorted(new - old):
            log.warning("degraded mode on: %s", mode)
            self._event("degraded_on", {"mode": mode})
        for mode in sorted(old - new):
            log.info("degraded mode off: %s", mode)
            self._event("degraded_off", {"mode": mode})

    def _log_events(self) -> None:
        """Write the events waiting for the store; a store refusing writes (disk full) keeps
        them for a retry a second later and never stops the control loop."""
        db = self.controller.sessions.db
        try:
            with db.conn:
                db.table("events").insert_all(self._unlogged)
        except sqlite3.Error as exc:
            if self._event_error is None:
                log.error("store refuses the event log (%s): events kept, retrying", exc)
            self._event_error = f"{exc} ({len(self._unlogged)} events pending)"
            del self._unlogged[:-MAX_UNLOGGED]  # a long outage keeps the latest ones
            self._event_retry_at = self.clock.monotonic() + 1.0
            return
        self._unlogged.clear()
        if self._event_error is not None:
            log.info("store writable again: event log caught up")
            self._event_error = None

    @property
    def store_error(self) -> str | None:
        """Why the store refuses writes (disk full, I/O error), or None when it takes them."""
        return self.controller.sessions.store_error or self._event_error

    def _event(self, kind: str, data: dict) -> None:
        row = {"ts": iso(self.clock.now()), "kind": kind, "data": json.dumps(data)}
        self._unlogged.append(row)
        self._log_events()
        if self.uplink is not None:
            self._enqueue(kind, data)

    async def _heartbeats(self, chargers: tuple[str, ...]) -> dict[str, bool]:
        async def one(cid: str) -> tuple[str, bool]:
            try:
                await self.devices.chargers[cid].heartbeat()
                return cid, True
            except Exception as exc:
                log.debug("heartbeat %s failed: %s", cid, exc)
                return cid, False

        return dict(await asyncio.gather(*(one(c) for c in chargers)))

    async def _battery(self, setpoint: float | None) -> bool | None:
        if setpoint is None or self.devices.inverter is None:
            return None
        try:
            await self.devices.inverter.set_battery_setpoint(setpoint)
            return True
        except Exception as exc:
            log.warning("battery setpoint %.2f kW failed: %s", setpoint, exc)
            return False

    async def shutdown(self) -> None:
        """Leave the station safe without us: every connector at most its fallback share,
        then the sessions' energy flushed to the store."""
        ctl = self.controller

        async def one(cid: str) -> None:
            dev = self.devices.chargers[cid]
            ch = ctl.chargers[cid]
            for idx in range(1, ch.connectors + 1):
                key = (cid, idx)
                cur = ctl.limits.get(key)
                safe = ctl.fallback_per_connector[key]
                try:  # a V2G discharge ends too: the fallback shares are safe without it
                    await dev.set_limit(idx, safe if cur is None else max(0.0, min(cur, safe)))
                except Exception as exc:
                    log.warning("charger %s/%d: safe limit not written: %s", cid, idx, exc)

        await asyncio.gather(*(one(cid) for cid in self.devices.chargers))
        for name, save in (
            ("sessions", ctl.sessions.flush),
            ("ledger", self.ledger.flush if self.ledger else None),
            ("battery health", self.battery.persist if self.battery else None),
        ):
            if save is not None:
                try:
                    save()
                except Exception:
                    log.exception("%s not stored at shutdown", name)
