"""The allocation rules in plain Python: the specification the numba kernel is held to.

Read this file to know what the allocator does; `kernel.py` computes the same numbers fast.

Units. Every power is counted in whole steps of 0.01 kW (10 W), so that results are exact to
0.01 kW and no sum can creep over a limit through floating-point error. Limits are rounded down
to a step (never granting more than allowed); quantities that reduce what may be granted (base
load, a session's minimum) are rounded up. A value within 1e-6 of a step counts as that step, so
that 7.13 read as 712.99999... is 7.13.

Currents. A session of x steps drawing on k phases carries 10 x / (k V) A on each of them
(V the phase-to-neutral voltage). Multiplied by 0.6 V this is 6 x / k, a whole number for
k = 1, 2, 3: current limits are compared exactly in these units ("sixths"), a limit of I amps
being floor(0.6 V I) of them. An AC session draws on its charger's first k conductors (k = the
EV's phases, at most the charger's), which the charger's phaseRotation maps to grid phases; a
DC charger draws balanced on all three.

Resolution. Under a tree (a circuit or a charger current limit), levels are found in 1/10,000
of a step (1 mW) and each allocation is rounded down to its step only at the end: a limit whose
sessions were rounded down must not push the shares under the next limit off by more than the
step (a 1-phase EV weighs three times a 3-phase one on its phase). Every allocation is then
within 0.01 kW of the exact max-min fair share and still never over a limit. There, any power
or current above 10 GW counts as 10 GW, so integer sums stay within 64 bits in the kernel.
Stations with kW limits only keep whole-step levels (the results they always had).

Limits. Every limit is linear, sum(weight[i] * x[i]) <= capacity over the sessions it holds:
- each charger: its maxPower (weight 1), and with maxCurrent one limit per grid phase;
- each circuit, over every session below it (sub-circuits included): maxPower - basePower
  (weight 1) and, per grid phase, maxCurrent - baseCurrent[phase] (in sixths);
- the station: the budget of rule 1 (weight 1).
A capacity below zero counts as zero: the EVs cannot shed a base load, only get nothing.
Limits are ranked: chargers (listing order), circuits deepest first (then listing order), the
station. The rank breaks ties in pausing and in naming what binds.

Rules, in order:
1. Budget for the EVs = gridCapacity - baseLoad + pvPower + the battery's discharge limit (none
   when soc <= minSoc). Below zero the EVs get nothing.
2. Each session's own ceiling is min(vehicleMaxPower, powerCap). A session with a non-zero
   ceiling and a minPower never gets an allocation strictly between 0 and its minPower:
   a. a session whose ceiling is below its minimum, or whose minimum alone exceeds one of its
      charger's limits, can never have it: paused;
   b. then, group by group in rank order (each charger with its limits, each circuit with its
      limits, the station), while one of the group's limits cannot hold the minimums of its
      sessions, the group's sessions pause in pause order (lowest priority first, then latest
      arrival), skipping those that weigh on no overloaded limit of the group: the pause falls
      under the circuit that cannot give the minimum, not station-wide.
   Paused sessions get 0 and the binding "minimum".
3. The others share max-min fairly (progressive filling): a common level rises; each session
   follows it between its minimum and its ceiling. The first limit that fills (the lowest
   level at which it is full; the first in rank on a tie) freezes every session it holds where
   they are; the level goes on rising for the others, until every limit is full or every
   session at its ceiling. Levels are whole steps: the highest step at which the limit still
   fits, so two limits can fill at the same step; the later one is then looked at again with
   the sessions the first froze fixed (it may hold one more step).
4. Binding: "vehicle" or "cap" when a session is at its own ceiling (the smaller of the two
   names it; "vehicle" on a tie), else what froze it: "charger", "circuit" (with the circuit
   named in bindingCircuit) or "station"; among limits filling at the same level, the first
   in rank.
5. Battery: discharges only what the EVs and base load need beyond grid capacity and PV (up to
   its available discharge), charges from PV surplus beyond base load and EVs (up to
   maxChargePower, not when soc is 100), never from the grid. The battery setpoint is in kW,
   not steps. gridPower = baseLoad + sum(EV) - pvPower - batteryPower.
   With a planned `setpoint` (battery.py): discharge = max(the above, min(setpoint,
   maxDischargePower, net load)) above minSoc, the net load baseLoad + EVs - pvPower so it
   never exports; charge = max(the above, min(-setpoint, maxChargePower, gridCapacity - net
   load)) below soc 100 and when not discharging: from the grid, in the room the EVs left.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from allocator.battery import follow_setpoint
from allocator.request import Request, Session, parse_request, result_dict

STEPS_PER_KW = 100  # results are exact to 0.01 kW
FINE = 10_000  # level resolution under a tree, per step
HUGE = 10**9  # steps (10 GW): under a tree, anything larger counts as this
_SNAP = 1e-6  # a value this close to a whole step is that step (decimal input read as binary)


def steps_down(kw: float) -> int:
    """kW to whole 0.01 kW steps, rounding down (for limits: never grant more)."""
    return math.floor(kw * STEPS_PER_KW + _SNAP)


def steps_up(kw: float) -> int:
    """kW to whole 0.01 kW steps, rounding up (for loads and minimums)."""
    return math.ceil(kw * STEPS_PER_KW - _SNAP)


def sixths_down(amps: float, voltage: float) -> int | None:
    """A current limit in A to whole sixths of a fine step (Currents, Resolution above),
    rounding down; None above 10 GW's worth (no limit)."""
    sixths = amps * 0.6 * voltage
    if sixths >= 6 * HUGE:
        return None
    return max(math.floor(sixths * FINE + _SNAP), 0)


def fine(steps: int, resolution: int) -> int | None:
    """A power limit in steps at the level resolution; None above 10 GW under a tree."""
    if resolution == 1:
        return max(steps, 0)
    return None if steps >= HUGE else max(steps, 0) * resolution


@dataclass
class Limit:
    """sum(weights[i] * x[i]) <= capacity over session powers x in steps."""
    binding: str  # "charger", "circuit" or "station": what a session it freezes is held by
    circuit: int  # the circuit's index for "circuit", else -1
    capacity: int
    weights: dict[int, int] = field(default_factory=dict)  # session -> weight


def build_limits(req: Request, ev_budget: int, resolution: int) -> list[list[Limit]]:
    """The limits, in groups (a charger's, a circuit's, the station's), in rank order, with
    capacities at the level resolution."""
    sessions = req.sessions
    phases = [req.conductors(s) for s in sessions]
    sixths = [6 // len(p) for p in phases]  # a session's weight on each phase it draws on

    def group(members: list[int], max_power: int | None, max_current: list[int | None] | None,
              binding: str, circuit: int = -1) -> list[Limit]:
        limits = []
        if max_power is not None:
            limits.append(Limit(binding, circuit, max_power, {i: 1 for i in members}))
        for capacity, p in zip(max_current or [], range(3), strict=False):
            if capacity is not None:
                weights = {i: sixths[i] for i in members if p in phases[i]}
                limits.append(Limit(binding, circuit, capacity, weights))
        return limits

    groups = []
    for j, charger in enumerate(req.chargers):
        members = [i for i, s in enumerate(sessions) if s.charger_index == j]
        amps = charger.max_current
        current = None if amps is None else [sixths_down(amps, req.voltage)] * 3
        groups.append(group(members, fine(steps_down(charger.max_power), resolution), current,
                            "charger"))

    def depth(k: int) -> int:
        parent = req.circuits[k].parent_index
        return 0 if parent is None else 1 + depth(parent)

    def under(k: int, s: Session) -> bool:  # is the session's charger below circuit k?
        at = req.chargers[s.charger_index].circuit_index
        while at is not None and at != k:
            at = req.circuits[at].parent_index
        return at == k

    for k in sorted(range(len(req.circuits)), key=lambda k: (-depth(k), k)):
        c = req.circuits[k]
        members = [i for i, s in enumerate(sessions) if under(k, s)]
        power = (None if c.max_power is None
                 else fine(steps_down(c.max_power) - steps_up(c.base_power), resolution))
        current = (None if c.max_current is None
                   else [sixths_down(c.max_current - c.base_current[p], req.voltage) for p in range(3)])
        groups.append(group(members, power, current, "circuit", k))
    groups.append(group(list(range(len(sessions))), fine(ev_budget, resolution), None, "station"))
    return groups


def limit_level(limit: Limit, low: Sequence[int], high: Sequence[int], frozen: dict[int, int],
                paused: set[int]) -> int | None:
    """The highest whole level t at which the limit holds, frozen sessions staying where they
    are and the others following t between their minimum (low) and ceiling (high); None when
    it holds even with every such session at its ceiling: it never fills.
    """
    fixed = sum(w * frozen[i] for i, w in limit.weights.items() if i in frozen)
    growing = [(i, w) for i, w in limit.weights.items() if i not in frozen and i not in paused]

    def filled(t: int) -> int:
        return fixed + sum(w * min(max(t, low[i]), high[i]) for i, w in growing)

    top = max((high[i] for i, _ in growing), default=0)
    if filled(top) <= limit.capacity:
        return None
    fits, overflows = 0, top  # filled(fits) <= capacity < filled(overflows)
    while overflows - fits > 1:
        mid = (fits + overflows) // 2
        if filled(mid) <= limit.capacity:
            fits = mid
        else:
            overflows = mid
    return fits


def allocate_request(req: Request) -> dict[str, Any]:
    """Apply the rules to a validated request; returns the JSON result of the contract."""
    sessions = req.sessions
    n = len(sessions)
    battery = req.battery

    # Rule 1: the budget.
    grid = steps_down(req.grid_capacity)
    base = steps_up(req.base_load)
    pv = steps_down(req.pv_power)
    available_discharge = (steps_down(battery.max_discharge_power)
                           if battery and battery.soc > battery.min_soc else 0)
    ev_budget = max(grid - base + pv + available_discharge, 0)
    resolution = FINE if req.limits_current else 1
    groups = build_limits(req, ev_budget, resolution)
    charger_groups = groups[:len(req.chargers)]

    # Rule 2: ceilings, minimums and who pauses (at the level resolution).
    vehicle = [steps_down(s.vehicle_max_power) for s in sessions]
    cap = [None if s.power_cap is None else steps_down(s.power_cap) for s in sessions]
    ceiling = [v if c is None else min(v, c) for v, c in zip(vehicle, cap, strict=True)]
    minimum = [steps_up(s.min_power) if ceiling[i] > 0 else 0 for i, s in enumerate(sessions)]
    if resolution > 1:
        ceiling = [min(c, HUGE) * resolution for c in ceiling]
        minimum = [m * resolution for m in minimum]
    pause_order = sorted(range(n), key=lambda i: (sessions[i].priority, -i))

    paused = {i for i, s in enumerate(sessions)
              if minimum[i] > ceiling[i]
              or any(limit.weights.get(i, 0) * minimum[i] > limit.capacity
                     for limit in charger_groups[s.charger_index])}

    def overloaded(limit: Limit) -> bool:
        load = sum(w * minimum[i] for i, w in limit.weights.items() if i not in paused)
        return load > limit.capacity

    for group in groups:
        for i in pause_order:
            over = [limit for limit in group if overloaded(limit)]
            if not over:
                break
            if i not in paused and minimum[i] > 0 and any(i in limit.weights for limit in over):
                paused.add(i)

    # Rule 3: progressive filling.
    frozen: dict[int, int] = {}
    held_by: dict[int, Limit] = {}
    filling = [limit for group in groups for limit in group]  # in rank order
    while filling:
        levels = [limit_level(limit, minimum, ceiling, frozen, paused) for limit in filling]
        if all(level is None for level in levels):
            break
        t = min(level for level in levels if level is not None)
        rest = []
        stopped: set[int] = set()  # frozen just now below where they would have grown
        for limit, level in zip(filling, levels, strict=True):
            if level is None:  # holds at every ceiling: freezing others only unloads it
                continue
            if level != t or stopped.intersection(limit.weights):
                # Limits fill one at a time, first in rank on a tie: one whose session was
                # just frozen by a limit before it is looked at again with that session fixed.
                rest.append(limit)
                continue
            for i in limit.weights:
                if i not in frozen and i not in paused:
                    frozen[i] = min(max(t, minimum[i]), ceiling[i])
                    held_by[i] = limit
                    if min(max(t + 1, minimum[i]), ceiling[i]) > frozen[i]:
                        stopped.add(i)
        filling = rest

    allocation = [0] * n
    binding = ["minimum"] * n
    binding_circuit = [-1] * n
    for i in range(n):
        if i in paused:
            continue
        x = frozen.get(i, ceiling[i])
        allocation[i] = x // resolution  # rounded down to its step
        if x >= ceiling[i]:  # Rule 4
            own_cap = cap[i]
            binding[i] = "cap" if own_cap is not None and own_cap < vehicle[i] else "vehicle"
        else:
            binding[i] = held_by[i].binding
            binding_circuit[i] = held_by[i].circuit

    # Rule 5: the battery and the grid, in kW rather than steps: the battery must be able to
    # cover a base load that is not a whole step exactly.
    ev_kw = sum(allocation) / STEPS_PER_KW
    discharge = 0.0
    if battery and battery.soc > battery.min_soc:
        need = ev_kw + req.base_load - req.pv_power - req.grid_capacity
        discharge = min(battery.max_discharge_power, max(0.0, need))
    charge = 0.0
    if battery and battery.soc < 100:
        charge = min(battery.max_charge_power, max(0.0, req.pv_power - req.base_load - ev_kw))
    battery_power = discharge - charge
    if battery and battery.setpoint is not None:  # the plan's setpoint (battery.py)
        battery_power = follow_setpoint(
            battery_power, battery.setpoint, net_kw=req.base_load + ev_kw - req.pv_power,
            grid_capacity=req.grid_capacity, max_discharge=battery.max_discharge_power,
            max_charge=battery.max_charge_power, soc=battery.soc, min_soc=battery.min_soc)
    grid_power = req.base_load + ev_kw - req.pv_power - battery_power

    return result_dict(req, [x / STEPS_PER_KW for x in allocation], binding,
                       battery_power, grid_power, binding_circuit)


def allocate_reference(request: dict[str, Any]) -> dict[str, Any]:
    """The reference allocator on a request dict (validated); same contract as allocate()."""
    return allocate_request(parse_request(request))
