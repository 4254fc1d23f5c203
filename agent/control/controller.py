"""The controller: one frozen snapshot in, one typed `Decision` out; no I/O in `decide`.

`Controller.decide(snapshot)` turns a snapshot into a `Decision` (allocation, ordered limit
writes, heartbeats, battery setpoint) and `Controller.commit()` records what the devices
acknowledged, then flushes the session tracker's and V2G's store writes: `decide` only
queues them (write intents), so no SQL runs between the read and the limit writes. Tests
drive these two cycle by cycle with hand-made snapshots; the cycle (agent/control/loop.py)
adds the I/O around them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from agent.config.settings import AgentSettings
from agent.control.apply import ApplyPlan, Key, plan_writes
from agent.control.battery_order import ordered_setpoint
from agent.control.budget import BudgetInputs, WindowMax, budget_inputs
from agent.control.caps import CapTracker, PauseRotation
from agent.control.circuit_meters import (
    CircuitMeasure,
    allowed_limit,
    keys_below,
    measure_circuits,
    stale_keys,
)
from agent.control.comeback import LIMIT_EPS_KW, rewrite_fallback
from agent.control.counted_draws import counted_draws
from agent.control.decision import AllocationInputs, ConnectorDecision, Decision, SessionRow
from agent.control.held import held_by_plan
from agent.control.limit_lag import FOLLOW_EPS_KW, LimitLag
from agent.control.residues import Residues
from agent.control.session_phases import SessionPhases
from agent.control.sessions import Session, SessionTracker
from agent.control.switch_fit import FitQuestions
from agent.control.tree import configure_tree, set_bases, start_reserves
from agent.control.unseen_drops import GRID, Scope, UnseenDrops, scopes
from agent.control.v2g import V2gDispatch, V2gOrders
from agent.model.snapshot import Snapshot
from allocator.binding import BINDING_NAMES
from allocator.guidance import Guidance

if TYPE_CHECKING:
    from agent.store.signals import Signals

# Hooks the daemon wires in (all optional; each is called once per cycle, must be cheap).
GuideFn = Callable[[datetime], Guidance | None]  # the horizon plan's current slot
IntervalFn = Callable[[datetime], tuple[float, float] | None]  # (kWh imported, h left)
AvailableFn = Callable[[datetime], bool]  # battery in dispatch (False: maintenance)


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
            len(st.chargers), max(1, sum(ch.connectors for ch in st.chargers)), len(st.circuits)
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
        self.in_fallback: set[str] = set()  # this cycle's chargers back from their fallback
        self.base_history = WindowMax(c.base_load_window_s)
        self.caps = CapTracker(c.probe_margin_kw, c.probe_margin_fraction, c.cap_after_s)
        self.rotation = PauseRotation(c.max_pause_s)
        self.battery_setpoint: float | None = None
        self._battery_written_at = float("-inf")
        # V2G discharges waiting for the headroom to end (apply.py): key -> since when.
        self.ends_waiting: dict[Key, float] = {}
        self._targets: dict[Key, float] = {}  # last cycle's, for the ramp reserves
        # Limits lowered but maybe not followed yet: their old value holds back increases.
        self.lag = LimitLag(c.limit_follow_s, settings.ocpp.meter_interval_s)
        # Increases under the deadband wanted long enough are written anyway (residues.py).
        self.residues = Residues(c.deadband_hold_s)
        # A new sample may have been taken a cycle or two before it is read; no longer, or
        # the connector's own change before its sample reads as a fall (a ramp down after a
        # decrease: 3.9 kW held for a 60 s meter interval with a 1 s look back).
        self.unseen = UnseenDrops(2 * c.period_s)
        # Each session's phase count, and its 1 <-> 3 phase switch where the charger can and
        # [phase_switch] enables it (agent/control/session_phases.py).
        self.phases = SessionPhases(settings, FitQuestions(self.arrays, self._charger_index),
                                    self.min_kw)
        b = st.battery
        self._battery_cfg = (b.min_soc, b.max_charge_kw, b.max_discharge_kw) if b else None

    def configure_station(self, settings: AgentSettings) -> None:
        """(Re)derive what depends on the station's ratings: at start and when a new station
        configuration (same chargers and connectors, new capacity or ratings) is swapped in
        between two cycles (agent/config/station_config.py)."""
        self.s = settings
        st = settings.station
        if hasattr(self, "lag"):  # a swap, not the start
            self.lag.follow_s = settings.control.limit_follow_s
            self.lag.sample_s = settings.ocpp.meter_interval_s
            self.residues.hold_s = settings.control.deadband_hold_s
            self.phases.configure(settings)
        self.chargers = {ch.id: ch for ch in st.chargers}
        self._charger_rows = tuple((ch.id, ch.max_power_kw, ch.connectors) for ch in st.chargers)
        configure_tree(self.arrays, st)
        self.fallback_per_connector = {
            (ch.id, i): settings.fallback_kw(ch) / ch.connectors
            for ch in st.chargers
            for i in range(1, ch.connectors + 1)
        }
        # Under a circuit a decrease is written whatever its size (apply.py: the deadband
        # must not leave the limits in force above a rating no meter margin absorbs).
        self.under_circuits: frozenset[Key] = frozenset().union(
            *(keys_below(st, c.id) for c in st.circuits))

    def for_station(self, settings: AgentSettings) -> Controller:
        """A controller for a station whose chargers changed, with this one's session
        tracker, signals and hooks (the arrays are sized for the chargers at construction,
        so it is a new one: agent/control/loop.py `replace_station`)."""
        return Controller(settings, self.sessions, signals=self.signals, guide=self.guide,
                          interval=self.interval, battery_available=self.battery_available,
                          v2g=self.v2g)  # fmt: skip

    @property
    def refresh_s(self) -> float:
        return self.s.control.comm_timeout_s * self.s.control.refresh_fraction

    def decide(self, snap: Snapshot) -> Decision:
        c = self.s.control
        t = snap.t
        if self.v2g is not None:  # before the tracker: a session ending now keeps its kWh
            self.v2g.account(snap, self.sessions.active)
        sessions = self.sessions.update(snap)
        previous_power = dict(self.last_power)  # last cycle's, for the grid sign check
        conns = self._connectors(snap)
        reachable = {ch.id: ch.reachable for ch in snap.chargers}

        battery_available = (
            self.battery_available(snap.ts) if self.battery_available is not None else True
        )
        # Limits lowered but maybe not followed yet count at their old value in the grid's
        # headroom and in every metered circuit's (limit_lag.py): asked once per cycle.
        drawing = {cd.key: cd.drawing_kw for cd in conns}
        vacant = {
            (ch.id, c.idx) for ch in snap.chargers if ch.reachable for c in ch.connectors
            if c.state == "A"
        }  # fmt: skip
        sample_ts = {cd.key: cd.drawing_ts for cd in conns}
        lagging = self.lag.still_allowed(drawing, t, vacant, sample_ts)
        # A sample taken before a decrease hides what the limit now allows above the draw:
        # the undrawn part counts it at most at the lowest limit since (limit_lag.py).
        bounds = self.lag.draw_bounds(sample_ts, t)
        # The snapshot's reads are not simultaneous: a charger answering after the meter shows
        # an EV ramping up further than the meter's import does, and the headroom (import +
        # what each limit allows above its draw) would hand out power the meter has not seen
        # yet (a restart out of the chargers' comm-timeout fallback, every EV ramping back at
        # 100 kW/s: 63 kW on a 60 kW grid). Last cycle's draw was read before this meter
        # reading: the undrawn part counts from the lower of the two.
        counted = {k: min(kw, bounds.get(k, kw)) for k, kw in drawing.items()}
        undrawn_from = {k: min(kw, previous_power.get(k, kw)) for k, kw in counted.items()}
        # A sample taken before an increase hides the EV's ramp from it while the circuit
        # meters show it: their base load counts it at its limit (limit_lag.py).
        raised = self.lag.base_draws(sample_ts, drawing, t) - vacant
        # The grid meter and every circuit meter split their readings with the same draws.
        draws = counted_draws(snap, self.limits, bounds, raised)
        budget = budget_inputs(
            snap,
            self.base_history,
            self.s.station.pessimistic_base_load_kw,
            self.limits,
            previous_power,
            self._battery_cfg if battery_available else None,
            pv_expected=self.s.station.pv_inverter is not None,
            draws=draws,
        )
        phases = self.phases.count(snap, self.sessions.active)
        # Metered circuits: their base load, and what is held while a meter is stale. Only
        # counts from a charger's own conductors narrow the apply rule's weights; one from a
        # circuit meter's step may be wrong (phase_learning.py).
        circuits = measure_circuits(self.s.station, snap, self.limits,
                                    self.fallback_per_connector, c.period_s, lagging,
                                    draws=draws,
                                    phases=phases.booked,
                                    measured_phases=phases.narrowing(),
                                    in_amps=phases.in_amps)  # fmt: skip
        bases: dict[str, tuple[tuple[float, float, float], float]] = {}
        if self.s.station.circuits:
            bases = {m.circuit_id: (m.base_current_a, m.base_power_kw) for m in circuits}
            waiting = {k: self.min_kw[k] for k in phases.waiting()}
            # An EV booked on fewer conductors than its charger's on a count that does not
            # narrow the apply rule's weights (a circuit meter's step may be wrong) gets an
            # increase only where its charger's other conductors have room too. Held back
            # there while others fill those phases, it waited for ever below its share (a
            # 1-phase EV on a rotated charger at 6.71 kW of 7.13, two on L1 at 2.81 of
            # 3.56 with 6.6 A free: tests/agent/test_phase_steps.py). So the increase held
            # back last cycle is kept free on them, as a start's reserve is. So is what a cap
            # leaves above its draw (the apply rule counts it there too): a 1-phase EV capped
            # at 4.14 kW drawing 3 kW on a rotated charger held 1.65 A of L1 (its third
            # conductor) that the allocator handed to two EVs on L1, and the second one's
            # start never fitted (tests/agent/test_phase_learning.py, once its step taught).
            # Only a cap's: an EV still ramping to its limit draws it soon.
            for k in phases.booked.keys() - phases.narrowing().keys():
                held_back = self._targets.get(k, 0.0) - (self.limits.get(k) or 0.0)
                if held_back < self.s.control.deadband_kw:  # no increase the rule asks for
                    held_back = 0.0
                cap = self.caps.cap(self.sessions.active[k].id)
                if cap is not None:
                    allowed = allowed_limit(self.limits, self.fallback_per_connector, lagging, k)
                    held_back += max(0.0, min(allowed, cap) - counted.get(k, 0.0))
                if held_back >= self.s.control.deadband_kw:
                    waiting[k] = max(waiting.get(k, 0.0), held_back)
            for cid, reserve in start_reserves(self.s.station, waiting).items():
                base_a, base_kw = bases.get(cid, ((0.0, 0.0, 0.0), 0.0))
                bases[cid] = (tuple(a + r for a, r in zip(base_a, reserve, strict=True)), base_kw)  # type: ignore[assignment]
            set_bases(self.arrays, self.s.station, bases)
        if circuits:
            stale = [m.circuit_id for m in circuits if m.stale]
            if stale:
                budget = replace(budget, modes=budget.modes | {f"circuit_meter_stale:{cid}"
                                                               for cid in stale})
        held = stale_keys(circuits)

        # Caps from measured consumption, then the allocator's order (rotation).
        live = [x for x in sessions if reachable.get(x.charger_id, False)]
        caps: dict[str, float] = {}
        by_key = {cd.key: cd for cd in conns}
        unmeasured = {(c.charger_id, c.idx) for c in snap.connectors() if not c.measured}
        min_kw = {key: self.phases.min_kw(key, phases) for key in self.min_kw}
        above = {(cs.charger_id, cs.idx): cs.cap_kw for cs in snap.connectors()
                 if cs.cap_kw is not None}
        for x in live:
            key = (x.charger_id, x.connector_idx)
            cd = by_key.get(key)
            cap = None
            if key not in unmeasured:  # no draw known yet: nothing to cap it from
                cap = self.caps.update(
                    x.id,
                    cd.drawing_kw if cd is not None else 0.0,
                    (cd.limit_kw if cd is not None else None) or 0.0,
                    self.min_kw[key],
                    t,
                    sample_t=cd.drawing_ts if cd is not None else None,
                )
                if key in held:  # its circuit's meter is stale: no more than its fallback
                    fallback = self.fallback_per_connector[key]
                    cap = fallback if cap is None else min(cap, fallback)
            if key in above:
                cap = _above(cap, above[key], min_kw[key])
            if cap is not None:
                caps[x.id] = cap
        self.caps.forget(x.id for x in live)
        order = self.rotation.order([x.id for x in live], t)
        by_id = {x.id: x for x in live}
        # a cap that waits only on the next sample: asked for (below, with the held falls')
        cap_samples = {(by_id[sid].charger_id, by_id[sid].connector_idx)
                       for sid in self.caps.samples_wanted(t) if sid in by_id}

        # The station's ceiling: grid capacity and a demand-response cap in force (obeyed
        # from this cycle on, plan or no plan), less the margin the apply step keeps free;
        # then the plan's import cap for this slot (economic: no margin below it).
        safety_ceiling = self.s.station.grid_capacity_kw
        power_cap = self.signals.active_power_cap(snap.ts) if self.signals is not None else None
        if power_cap is not None:
            safety_ceiling = min(safety_ceiling, power_cap)
        safe_grid = grid = max(0.0, safety_ceiling - c.headroom_margin_kw)
        guidance = self.guide(snap.ts) if self.guide is not None else None
        if guidance is not None:
            so_far = self.interval(snap.ts) if self.interval is not None else None
            grid = min(grid, guidance.grid_cap(*(so_far or (None, None))))

        v2g = (
            self.v2g.dispatch(snap, live, self.chargers, guidance)
            if self.v2g is not None
            else V2gOrders()
        )
        inputs = self._fill(budget, grid, [by_id[sid] for sid in order], caps, guidance, v2g,
                            phases.booked, min_kw,
                            {ch.id: ch.cap_kw for ch in snap.chargers if ch.cap_kw is not None})
        self.arrays.solve()
        allocations, binding = self._answer(inputs)
        # Read before the phase what-ifs below re-solve the same arrays with other rows.
        battery_kw, alloc_grid_kw = self.arrays.battery_power, self.arrays.grid_power
        fits = self.phases.what_ifs(inputs, allocations, binding, phases, bases)
        held_by = held_by_plan(guidance, inputs.sessions, allocations, binding,
                            plan_lowered_grid=grid < safe_grid - 1e-6, guarded=v2g.guarded)
        self.rotation.observe(
            [sid for sid, kw in allocations.items() if kw <= 0 and binding.get(sid) == "minimum"],
            t,
        )

        for cd in conns:
            s = cd.session
            if s is None:
                continue
            cd.target_kw = allocations.get(s.id, 0.0)
            if s.id in v2g.discharge_kw:
                cd.target_kw = -v2g.discharge_kw[s.id]
            if self.phases.held(cd.key):  # a phase switch under way
                cd.target_kw = 0.0
        targets = {cd.key: cd.target_kw for cd in conns}
        self._targets = targets

        if snap.grid_kw is not None and snap.grid_age_s > c.period_s:
            # A reading from an earlier cycle confirms nothing: the EVs may have ramped
            # up since. As if at the ceiling: decreases go out, increases wait.
            import_kw = max(snap.grid_kw, safety_ceiling)
        elif snap.grid_kw is not None:
            import_kw = snap.grid_kw
        else:  # no measurement: the safe budget's base load plus what the EVs draw
            import_kw = budget.base_load_kw + sum(drawing.values())
        current = {cd.key: cd.limit_kw for cd in conns}
        due = self.residues.due(targets, current, t)
        # An EV's own pause behind its charger's sample: the fall it may hide waits for
        # its next sample before any increase uses it (unseen_drops.py).
        hidden = self._unseen(snap, circuits, counted, lagging, sample_ts, vacant)
        import_kw += hidden.get(GRID, 0.0)
        rooms = [(weights, max(0.0, room - hidden.get((m.circuit_id, r), 0.0)))
                 for m in circuits for r, (weights, room) in enumerate(m.rooms)]  # fmt: skip

        def plan_for(import_kw: float) -> ApplyPlan:
            return plan_writes(
                targets,
                current,
                undrawn_from,
                min_kw,
                self.fallback_per_connector,
                import_kw=import_kw,
                capacity_kw=safety_ceiling,
                margin_kw=c.headroom_margin_kw,
                deadband_kw=c.deadband_kw,
                now=t,
                meter_fresh=snap.grid_kw is not None,
                ends_waiting=self.ends_waiting,
                end_timeout_s=self.s.v2g.end_timeout_s,
                lagging=lagging,
                circuits=rooms,
                exact_keys=self.under_circuits,
                due=due,
            )

        # The battery giving less raises the import: it goes first out of the headroom,
        # the EVs' increases share what is left (agent/control/battery_order.py). A drop
        # already ordered but not yet followed (the battery still gives more than its
        # setpoint) is import to come, like an EV's limit it does not draw yet.
        measured = snap.battery.power_kw if snap.battery is not None else snap.inverter_battery_kw
        in_force = self.battery_setpoint
        pending = max(0.0, measured - in_force) if measured is not None and in_force is not None else 0.0
        plan = plan_for(import_kw + pending)
        battery_present = in_force if in_force is not None else measured
        battery_sp = ordered_setpoint(
            self._battery_setpoint(budget, battery_kw, t), battery_present, plan.headroom_kw
        )
        if battery_sp is not None and battery_present is not None and battery_sp < battery_present:
            plan = plan_for(import_kw + pending + battery_present - battery_sp)
        plan = rewrite_fallback(plan, self.in_fallback, current)
        switches = self.phases.steps(snap, self.sessions.active, targets, current, drawing,
                                     lagging, allocations, binding, fits,
                                     c.deadband_kw + LIMIT_EPS_KW)  # fmt: skip
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
            allocations=allocations,
            binding=binding,
            battery_kw=battery_kw,
            grid_kw=round(alloc_grid_kw, 6) + 0.0,
            connectors=tuple(conns),
            targets=targets,
            plan=plan,
            heartbeats=heartbeats,
            battery_setpoint_kw=battery_sp,
            sessions=tuple(sessions),
            caps=caps,
            power_cap_kw=power_cap,
            planned=guidance is not None,
            held=held_by,
            battery_available=battery_available,
            v2g=v2g,
            phases=phases.counts,
            phase_switches=switches,
            # increases wait on a held fall: ask for the samples that would end it; and for
            # those that would cap a session drawing less than its limit (caps.py); and for
            # raises not shown yet whose undrawn part holds them back, or whose EV had the
            # time to follow (counted at its limit in the base loads meanwhile: limit_lag.py)
            samples_wanted=tuple(sorted(cap_samples | (
                self.unseen.behind if hidden and plan.held_back_kw > 0 else frozenset())
                | _unproven_raises(plan, {k: allowed_limit(self.limits,
                                                         self.fallback_per_connector, lagging, k)
                                           for k in raised}, undrawn_from)
                | (self.lag.overdue() & raised))),
        )

    def _connectors(self, snap: Snapshot) -> list[ConnectorDecision]:
        """One `ConnectorDecision` per connector of a reachable charger, with the limit in
        force and what it draws; also refreshes `limits` and `last_power` from the snapshot."""
        active = self.sessions.active
        out: list[ConnectorDecision] = []
        self.in_fallback = set()  # chargers showing less than we wrote (comeback.py)
        for ch in snap.chargers:
            if not ch.reachable:
                self.unreachable.add(ch.id)
                continue
            if ch.id in self.unreachable:  # back: its own fallback may be in force
                self.unreachable.discard(ch.id)
                self.in_fallback.add(ch.id)
            for conn in ch.connectors:
                key = (ch.id, conn.idx)
                if conn.limit_kw is not None and key in self.limits:
                    # The charger's own register is the truth: it shows a fallback taken
                    # while we were silent, or a write that did not land.
                    before = self.limits[key]
                    if before is not None and conn.limit_kw < before - LIMIT_EPS_KW:
                        self.in_fallback.add(ch.id)
                    self.limits[key] = conn.limit_kw
                self.last_power[key] = conn.power_kw
                out.append(
                    ConnectorDecision(key, self.limits.get(key), conn.power_kw, active.get(key),
                                      drawing_ts=conn.power_ts)
                )
        return out

    def _unseen(self, snap: Snapshot, circuits: list[CircuitMeasure],
                counted: Mapping[Key, float], lagging: Mapping[Key, float],
                sample_ts: Mapping[Key, float | None],
                vacant: set[Key]) -> dict[Scope, float]:  # fmt: skip
        """kW per scope (GRID, or a circuit's room) the increases hold back this cycle.
        `counted`: each connector's draw, bounded after a decrease (limit_lag.py)."""
        if not any(ts is not None for ts in sample_ts.values()):
            return {}  # no charger reports by samples (Modbus): nothing can hide
        grid_level = None
        if snap.grid_kw is not None and snap.grid_age_s <= self.s.control.period_s:
            battery = snap.battery.power_kw if snap.battery is not None else snap.inverter_battery_kw
            grid_level = (snap.grid_kw - sum(counted.values()) + (snap.pv_kw or 0.0)
                          + (battery or 0.0))  # fmt: skip
        rooms: dict[Scope, tuple[Mapping[Key, float], float, Mapping[Key, float]]] = {
            (m.circuit_id, r): (weights, m.levels[r], m.drawn[r])
            for m in circuits if not m.stale for r, (weights, _) in enumerate(m.rooms)}  # fmt: skip
        allowed = {k: allowed_limit(self.limits, self.fallback_per_connector, lagging, k)
                   for k in counted}  # fmt: skip
        return self.unseen.update(snap.t, *scopes(grid_level, rooms, counted, allowed,
                                                  sample_ts, vacant))

    def _fill(
        self,
        budget: BudgetInputs,
        grid_kw: float,
        ordered: list[Session],
        caps: dict[str, float],
        guidance: Guidance | None,
        v2g: V2gOrders,
        booked: Mapping[Key, int],
        min_kw: Mapping[Key, float],
        charger_above: Mapping[str, float] | None = None,
    ) -> AllocationInputs:
        """Write this cycle's inputs into the kernel's arrays (no request dict, no parsing).
        `charger_above`: charger id -> a limit on the whole charger above the agent's (a
        CSMS's max profile), its maxPower while in force."""
        a = self.arrays
        chargers = self._charger_rows
        if charger_above:
            chargers = tuple((cid, min(kw, max(0.0, charger_above.get(cid, kw))), n)
                             for cid, kw, n in chargers)
        for j, (_, kw, _) in enumerate(chargers):
            a.charger_max[j] = kw
        grid = max(0.0, grid_kw)
        b = budget.battery
        if b is not None and guidance is not None:
            # The plan's direction narrows the limits; its power is the setpoint rule 5
            # follows (charging from the grid only in the room left after the EVs).
            charge, discharge = guidance.battery_limits(b["maxChargePower"], b["maxDischargePower"])
            b = {**b, "maxChargePower": charge, "maxDischargePower": discharge,
                 "setpoint": guidance.battery_kw}
        a.set_station(
            grid_capacity=grid,
            base_load=budget.base_load_kw,
            pv_power=budget.pv_kw + v2g.supply_kw,
            battery_max_discharge=b["maxDischargePower"] if b else 0.0,
            battery_max_charge=b["maxChargePower"] if b else 0.0,
            battery_soc=b["soc"] if b else 0.0,
            battery_min_soc=b["minSoc"] if b else 0.0,
            battery_setpoint=b.get("setpoint") if b else None,
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
            key = (x.charger_id, x.connector_idx)
            phases = booked.get(key, 0)  # 0: its charger's
            a.set_session(
                row,
                charger=self._charger_index[x.charger_id],
                vehicle_max=vmax,
                power_cap=math.inf if cap is None else cap,
                min_power=min_kw[key],
                priority=priority,
                phases=phases,
            )
            rows.append(SessionRow(x.id, x.charger_id, x.connector_idx, vmax, cap, min_kw[key],
                                   priority, phases))
        a.n_sessions = len(rows)
        return AllocationInputs(
            station_id=self.s.station.id,
            grid_capacity_kw=grid,
            base_load_kw=budget.base_load_kw,
            pv_kw=budget.pv_kw,
            battery=b,
            chargers=chargers,
            sessions=tuple(rows),
            v2g_supply_kw=v2g.supply_kw,
        )

    def _answer(self, inputs: AllocationInputs) -> tuple[dict[str, float], dict[str, str]]:
        """The kernel's allocation and binding keyed by session id."""
        a = self.arrays
        allocation = a.allocation
        binding = a.binding
        ids = [r.session_id for r in inputs.sessions]
        return (
            {sid: float(allocation[i]) for i, sid in enumerate(ids)},
            {sid: BINDING_NAMES[binding[i]] for i, sid in enumerate(ids)},
        )

    def _battery_setpoint(self, budget: BudgetInputs, battery_kw: float, t: float) -> float | None:
        if self._battery_cfg is None:
            return None
        # Stale BMS or stale grid meter: the battery is not counted on, so it idles.
        sp = float(battery_kw) if budget.battery is not None else 0.0
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
        phase_acks: Mapping[Key, bool] | None = None,
    ) -> None:
        """Record what the devices acknowledged (a failed write leaves the limit unknown),
        then flush the store writes `decide` queued: after the limit writes, so the store
        never delays them."""
        t = decision.snapshot.t
        self.ends_waiting = dict(decision.plan.ends_waiting)
        drawing = {cd.key: cd.drawing_kw for cd in decision.connectors}
        sampled = {cd.key for cd in decision.connectors if cd.drawing_ts is not None}
        for w in decision.plan.writes:
            key = (w.charger_id, w.idx)
            if writes.get(key):
                self.limits[key] = w.kw
                self.last_contact[w.charger_id] = t
                if w.previous_kw is not None and w.kw < w.previous_kw:
                    self.lag.lowered(key, w.previous_kw, w.kw, drawing.get(key, 0.0), t,
                                     sampled=key in sampled)
                else:
                    up = w.previous_kw is None or w.kw > w.previous_kw
                    self.lag.raised(key, w.kw, t, sampled=up and key in sampled)
            else:
                self.limits[key] = None
                self.lag.forget([key])
        for cid, ok in heartbeats.items():
            if ok:
                self.last_contact[cid] = t
        self.phases.acknowledged(phase_acks)  # None: the caller wrote every switch it was given
        if battery_ok and decision.battery_setpoint_kw is not None:
            self.battery_setpoint = decision.battery_setpoint_kw
            self._battery_written_at = t
        if self.v2g is not None:  # the discharge before the stop row, as they were counted
            self.v2g.flush_writes(t)
        self.sessions.flush_writes(t)


def _unproven_raises(plan: ApplyPlan, allowed: Mapping[Key, float],
                     undrawn_from: Mapping[Key, float]) -> frozenset[Key]:
    """Of the sampled connectors raised but not shown following yet (limit_lag.py
    `base_draws`; `allowed`: what each may draw, circuit_meters.py `allowed_limit`), those
    whose undrawn part (allowed - counted draw) the headroom counts, when increases are held
    back this cycle: the EV most likely draws its new limit already, but its sample is up
    to a meter interval old, so the power stays "undrawn" and the increases wait for the
    next periodic sample (a raise from 35 to 50 kW with a 60 s interval held at 50 of 60
    for up to 60 s). Their sample, asked now, ends that wait; they are never counted as
    drawn without one. The same held-back figure covers a circuit's room (apply.py counts
    the undrawn part there too), so a circuit's hold asks as well."""
    if plan.held_back_kw <= 0.0:
        return frozenset()
    return frozenset(k for k, kw in allowed.items()
                     if kw - undrawn_from.get(k, 0.0) > FOLLOW_EPS_KW)


def _above(cap: float | None, above_kw: float, min_kw: float) -> float:
    """A session's cap with a limit above the agent's (an operator CSMS's, OCPP local
    controller mode: the charger applies it whatever the agent writes). As a cap it leaves
    the rest to the others, and its lifting is an increase like any other (headroom-checked,
    LimitLag), not a jump the loop sees as base load. One between 0 and the minimum counts
    at the minimum: the charger holds the EV there by itself, and the allocator pausing it
    would take away what the CSMS lets it draw."""
    kw = max(0.0, above_kw)
    if 0.0 < kw < min_kw:
        kw = min_kw
    return kw if cap is None else min(cap, kw)
