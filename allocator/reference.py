"""The allocation rules in plain Python: the specification the numba kernel is held to.

Read this file to know what the allocator does; `kernel.py` computes the same numbers fast.

Units. Every power is counted in whole steps of 0.01 kW, so that results are exact to 0.01 kW
and no sum can creep over a limit through floating-point error. Limits are rounded down to a
step (never granting more than allowed); quantities that reduce what may be granted (base load,
a session's minimum) are rounded up. A value within 1e-6 of a step counts as that step, so that
7.13 read as 712.99999... is 7.13.

Rules, in order:
1. Budget for the EVs = gridCapacity - baseLoad + pvPower + the battery's discharge limit (none
   when soc <= minSoc). Below zero the EVs get nothing.
2. Each session's own ceiling is min(vehicleMaxPower, powerCap). A session with a non-zero
   ceiling and a minPower never gets an allocation strictly between 0 and its minPower:
   a. a session whose ceiling (or charger) is below its minimum can never have it: paused;
   b. where a charger cannot give all its sessions their minimum, its sessions pause in pause
      order (lowest priority first, then latest arrival) until it can;
   c. where the budget cannot, sessions anywhere pause in pause order until it can.
   Paused sessions get 0 and the binding "minimum".
3. The others share max-min fairly (progressive filling): a common level rises; each session
   follows it between its minimum and its ceiling; a charger whose sessions reach its maxPower
   freezes them there (the charger's level); the station stops when the sum reaches the budget
   (the station level). Levels are whole steps: the highest step at which everything fits.
4. Binding: "vehicle" or "cap" when a session is at its own ceiling (the smaller of the two
   names it; "vehicle" on a tie), else "charger" when its charger saturated at a level not
   above the station's, else "station".
5. Battery: discharges only what the EVs and base load need beyond grid capacity and PV (up to
   its available discharge), charges from PV surplus beyond base load and EVs (up to
   maxChargePower, not when soc is 100), never from the grid. The battery setpoint is in kW,
   not steps. gridPower = baseLoad + sum(EV) - pvPower - batteryPower.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from allocator.request import Request, parse_request, result_dict

STEPS_PER_KW = 100  # results are exact to 0.01 kW
_SNAP = 1e-6  # a value this close to a whole step is that step (decimal input read as binary)


def steps_down(kw: float) -> int:
    """kW to whole 0.01 kW steps, rounding down (for limits: never grant more)."""
    return math.floor(kw * STEPS_PER_KW + _SNAP)


def steps_up(kw: float) -> int:
    """kW to whole 0.01 kW steps, rounding up (for loads and minimums)."""
    return math.ceil(kw * STEPS_PER_KW - _SNAP)


def fill_level(lows: Sequence[int], highs: Sequence[int], capacity: int) -> int | None:
    """The highest whole level t at which sum(clamp(t, low, high)) fits in capacity.

    Each term is a session following the common level t between its minimum (low) and its
    ceiling (high). None when even every ceiling together fits: the limit never binds.
    The caller guarantees that the minimums fit (sum(lows) <= capacity).
    """
    def filled(t: int) -> int:
        return sum(min(max(t, lo), hi) for lo, hi in zip(lows, highs, strict=True))

    if filled(max(highs, default=0)) <= capacity:
        return None
    fits, overflows = 0, max(highs)  # filled(fits) <= capacity < filled(overflows)
    while overflows - fits > 1:
        mid = (fits + overflows) // 2
        if filled(mid) <= capacity:
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

    # Rule 2: ceilings, minimums and who pauses.
    vehicle = [steps_down(s.vehicle_max_power) for s in sessions]
    cap = [None if s.power_cap is None else steps_down(s.power_cap) for s in sessions]
    ceiling = [v if c is None else min(v, c) for v, c in zip(vehicle, cap, strict=True)]
    charger_max = [steps_down(c.max_power) for c in req.chargers]
    minimum = [steps_up(s.min_power) if ceiling[i] > 0 else 0 for i, s in enumerate(sessions)]
    on_charger: list[list[int]] = [[] for _ in req.chargers]
    for i, s in enumerate(sessions):
        on_charger[s.charger_index].append(i)
    pause_order = sorted(range(n), key=lambda i: (sessions[i].priority, -i))

    paused = {i for i in range(n)
              if minimum[i] > min(ceiling[i], charger_max[sessions[i].charger_index])}

    def pause_until_minimums_fit(group: list[int], capacity: int) -> None:
        for i in pause_order:
            if sum(minimum[k] for k in group if k not in paused) <= capacity:
                return
            if i in group and i not in paused and minimum[i] > 0:
                paused.add(i)

    for j, group in enumerate(on_charger):
        pause_until_minimums_fit(group, charger_max[j])
    pause_until_minimums_fit(list(range(n)), ev_budget)
    active = [i for i in range(n) if i not in paused]

    # Rule 3: progressive filling, charger levels first, then the station level.
    charger_level: list[int | None] = []
    for j, group in enumerate(on_charger):
        members = [i for i in group if i not in paused]
        charger_level.append(fill_level([minimum[i] for i in members],
                                        [ceiling[i] for i in members], charger_max[j]))
    held = [0] * n  # what each session reaches if only its own charger limited it
    for i in active:
        level = charger_level[sessions[i].charger_index]
        held[i] = ceiling[i] if level is None else max(minimum[i], min(ceiling[i], level))
    station_level = fill_level([minimum[i] for i in active], [held[i] for i in active], ev_budget)

    allocation = [0] * n
    binding = ["minimum"] * n
    for i in active:
        x = held[i] if station_level is None else max(minimum[i], min(held[i], station_level))
        allocation[i] = x
        level = charger_level[sessions[i].charger_index]
        if x >= ceiling[i]:  # Rule 4
            own_cap = cap[i]
            binding[i] = "cap" if own_cap is not None and own_cap < vehicle[i] else "vehicle"
        elif level is not None and (station_level is None or level <= station_level):
            binding[i] = "charger"
        else:
            binding[i] = "station"

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
    grid_power = req.base_load + ev_kw - req.pv_power - battery_power

    return result_dict(req, [x / STEPS_PER_KW for x in allocation], binding,
                       battery_power, grid_power)


def allocate_reference(request: dict[str, Any]) -> dict[str, Any]:
    """The reference allocator on a request dict (validated); same contract as allocate()."""
    return allocate_request(parse_request(request))
