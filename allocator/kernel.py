"""The real-time allocator: the rules of `reference.py`, jitted, on flat pre-allocated arrays.

Nothing here creates a Python object or a numpy array: the caller (`arrays.StationArrays`)
owns every input, output and scratch array, so the control loop can call `solve` every cycle.
Numba caches the compiled code (`cache=True`) in NUMBA_CACHE_DIR, which it reads itself.

Speed. Levels are found by Newton steps on the piecewise-linear fill function instead of
sorting: from a level where everything fits, jump to where the current slope says the limit
is reached, or to the next session minimum above the level, whichever comes first. Where the
fill function is concave (between minimums) the jump never overshoots, and each jump that does
not finish passes at least one session's ceiling or minimum, so the cost is O(n * levels) with
levels the number of distinct breakpoints crossed, a handful in practice. Each charger's
sessions are bucketed together (counting sort) and solved on their own slice, then the station
level over all active sessions; sessions at their ceiling drop out of later passes. Pausing for
minimums uses a binary heap in scratch space: O(n + paused * log n), only when a minimum does
not fit.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

STEPS_PER_KW = 100
NO_LIMIT = np.int64(1) << np.int64(62)  # a level or ceiling that never binds, in steps
_NO_LIMIT_KW = 1e13  # kW values at or above this are "no limit"
_SNAP = 1e-6

# binding codes (index into binding.BINDING_NAMES)
VEHICLE, CAP, CHARGER, STATION, MINIMUM = 0, 1, 2, 3, 4

# `station` array: inputs, then outputs
GRID_CAPACITY, BASE_LOAD, PV_POWER, BATTERY_MAX_DISCHARGE, BATTERY_MAX_CHARGE = 0, 1, 2, 3, 4
BATTERY_SOC, BATTERY_MIN_SOC, OUT_BATTERY_POWER, OUT_GRID_POWER = 5, 6, 7, 8
STATION_FIELDS = 9
# rows of `session_f` (kW, priority) and `session_i` (charger index, arrival rank)
VEHICLE_MAX, POWER_CAP, MIN_POWER, PRIORITY = 0, 1, 2, 3
SESSION_F_ROWS = 4
CHARGER_INDEX, ARRIVAL = 0, 1
SESSION_I_ROWS = 2
# scratch rows: per session, and per charger (capacity, level, bucket offsets, minimum sums)
SCRATCH_SESSION_ROWS = 7
SCRATCH_CHARGER_ROWS = 4

OK, BAD_CHARGER_INDEX = 0, 1


@njit(cache=True)
def _steps_down(kw: float) -> np.int64:
    if kw != kw:  # NaN: grant nothing
        return np.int64(0)
    if kw >= _NO_LIMIT_KW:
        return NO_LIMIT
    return np.int64(math.floor(kw * STEPS_PER_KW + _SNAP))


@njit(cache=True)
def _steps_up(kw: float) -> np.int64:
    if kw != kw or kw >= _NO_LIMIT_KW:  # NaN load or minimum: the worst case
        return NO_LIMIT
    return np.int64(math.ceil(kw * STEPS_PER_KW - _SNAP))


@njit(cache=True)
def _fill_level(pending, start, end, low, high, capacity):  # noqa: ANN001 (numba arrays)
    """The highest whole level t with sum(clamp(t, low[i], high[i])) <= capacity over the
    sessions pending[start:end]; NO_LIMIT when every ceiling fits.

    Requires sum(low) <= capacity and low <= high. Reorders pending[start:end] (scratch).
    Accumulators are locals so they stay in registers: this loop is the kernel's hot spot.
    """
    level = 0
    saturated = 0  # ceilings of the sessions already at them
    while True:
        fill = saturated
        slope = 0
        next_low = NO_LIMIT
        # Levels only rise, so a session at its ceiling stays there: it leaves the slice.
        kept = start
        for k in range(start, end):
            i = pending[k]
            h = high[i]
            if level >= h:
                saturated += h
                fill += h
                continue
            pending[kept] = i
            kept += 1
            lo = low[i]
            if level < lo:
                fill += lo
                if lo < next_low:
                    next_low = lo
            else:
                fill += level
                slope += 1
        end = kept
        if slope == 0:
            # flat: nothing grows until the next minimum is passed, or never again
            if next_low == NO_LIMIT:
                return NO_LIMIT
            level = next_low
        else:
            step = (capacity - fill) // slope
            if step <= 0:
                return level
            level = min(level + step, next_low)


@njit(cache=True)
def _pauses_first(a, b, priority, arrival):  # noqa: ANN001
    """Pause order: lowest priority first, then the latest arrival."""
    if priority[a] != priority[b]:
        return priority[a] < priority[b]
    return arrival[a] > arrival[b]


@njit(cache=True)
def _sift_down(heap, start, size, priority, arrival):  # noqa: ANN001
    i = start
    while True:
        first = 2 * i + 1
        if first >= size:
            return
        if first + 1 < size and _pauses_first(heap[first + 1], heap[first], priority, arrival):
            first += 1
        if not _pauses_first(heap[first], heap[i], priority, arrival):
            return
        heap[i], heap[first] = heap[first], heap[i]
        i = first


@njit(cache=True)
def _heapify(heap, size, priority, arrival):  # noqa: ANN001
    for start in range(size // 2 - 1, -1, -1):
        _sift_down(heap, start, size, priority, arrival)


@njit(cache=True)
def _pop(heap, size, priority, arrival):  # noqa: ANN001
    top = heap[0]
    heap[0] = heap[size - 1]
    _sift_down(heap, 0, size - 1, priority, arrival)
    return top


@njit(cache=True)
def solve(station, n_chargers, charger_max, n_sessions, session_f, session_i,  # noqa: ANN001
          allocation, binding, scratch_s, scratch_c):
    """Allocate one cycle. Inputs are read, outputs written in place; returns OK or an error code.

    station: float64[STATION_FIELDS] (kW; soc in %), outputs at OUT_BATTERY_POWER, OUT_GRID_POWER
    charger_max: float64[>= n_chargers] kW
    session_f: float64[SESSION_F_ROWS, >= n_sessions] vehicle max, power cap (inf: none),
        min power (kW), priority; session_i: int64[SESSION_I_ROWS, >= n_sessions] charger index,
        arrival rank (larger = arrived later)
    allocation: float64[>= n_sessions] kW out; binding: int8[>= n_sessions] code out
    scratch_s: int64[SCRATCH_SESSION_ROWS, >= n_sessions];
    scratch_c: int64[SCRATCH_CHARGER_ROWS, >= n_chargers + 1]
    """
    n = n_sessions
    charger_of = session_i[CHARGER_INDEX]
    arrival = session_i[ARRIVAL]
    priority = session_f[PRIORITY]
    for i in range(n):
        if charger_of[i] < 0 or charger_of[i] >= n_chargers:
            return BAD_CHARGER_INDEX

    ceiling = scratch_s[0]
    low = scratch_s[1]
    high = scratch_s[2]
    active = scratch_s[3]
    heap = scratch_s[4]
    pending = scratch_s[5]
    capped = scratch_s[6]  # 1 when powerCap, not the vehicle, sets the ceiling
    charger_cap = scratch_c[0]
    charger_level = scratch_c[1]
    bucket = scratch_c[2]  # sessions of charger j are pending[bucket[j]:bucket[j + 1]]
    minimum_sum = scratch_c[3]

    # Rule 1: the budget.
    grid = _steps_down(station[GRID_CAPACITY])
    base = _steps_up(station[BASE_LOAD])
    pv = _steps_down(station[PV_POWER])
    available_discharge = 0
    if station[BATTERY_SOC] > station[BATTERY_MIN_SOC]:
        available_discharge = _steps_down(station[BATTERY_MAX_DISCHARGE])
    ev_budget = max(grid - base + pv + available_discharge, 0)

    # Rule 2: ceilings, minimums, pauses.
    for j in range(n_chargers):
        charger_cap[j] = _steps_down(charger_max[j])
        minimum_sum[j] = 0
    for i in range(n):
        j = charger_of[i]
        vehicle = _steps_down(session_f[VEHICLE_MAX, i])
        cap = _steps_down(session_f[POWER_CAP, i])
        c = min(vehicle, cap)
        ceiling[i] = c
        capped[i] = 1 if cap < vehicle else 0
        m = _steps_up(session_f[MIN_POWER, i]) if c > 0 else 0
        low[i] = m
        if m > min(c, charger_cap[j]):
            active[i] = 0  # can never reach its minimum
        else:
            active[i] = 1
            minimum_sum[j] += m

    size = 0  # chargers whose minimums do not fit pause their sessions in pause order
    for i in range(n):
        j = charger_of[i]
        if active[i] and low[i] > 0 and minimum_sum[j] > charger_cap[j]:
            heap[size] = i
            size += 1
    _heapify(heap, size, priority, arrival)
    while size > 0:
        i = _pop(heap, size, priority, arrival)
        size -= 1
        j = charger_of[i]
        if minimum_sum[j] > charger_cap[j]:
            active[i] = 0
            minimum_sum[j] -= low[i]

    total_minimum = 0
    for j in range(n_chargers):
        total_minimum += minimum_sum[j]
    if total_minimum > ev_budget:  # the budget cannot: pause anywhere in pause order
        size = 0
        for i in range(n):
            if active[i] and low[i] > 0:
                heap[size] = i
                size += 1
        _heapify(heap, size, priority, arrival)
        while total_minimum > ev_budget:
            i = _pop(heap, size, priority, arrival)
            size -= 1
            active[i] = 0
            total_minimum -= low[i]

    # Rule 3: charger levels, then the station level. A counting sort puts each charger's
    # active sessions next to each other in `pending`.
    for j in range(n_chargers + 1):
        bucket[j] = 0
    for i in range(n):
        if active[i]:
            bucket[charger_of[i] + 1] += 1
    for j in range(n_chargers):
        bucket[j + 1] += bucket[j]
    for i in range(n):
        if active[i]:
            j = charger_of[i]
            pending[bucket[j]] = i
            bucket[j] += 1
    start = 0  # bucket[j] now holds the end of charger j's run
    for j in range(n_chargers):
        charger_level[j] = _fill_level(pending, start, bucket[j], low, ceiling, charger_cap[j])
        start = bucket[j]
    size = 0
    for i in range(n):
        if active[i]:
            high[i] = max(low[i], min(ceiling[i], charger_level[charger_of[i]]))
            pending[size] = i
            size += 1
    station_level = _fill_level(pending, 0, size, low, high, ev_budget)

    ev_total = 0
    for i in range(n):
        if not active[i]:
            allocation[i] = 0.0
            binding[i] = MINIMUM
            continue
        x = max(low[i], min(high[i], station_level))
        ev_total += x
        allocation[i] = x / STEPS_PER_KW
        level = charger_level[charger_of[i]]
        if x >= ceiling[i]:  # Rule 4
            if capped[i]:
                binding[i] = CAP
            else:
                binding[i] = VEHICLE
        elif level != NO_LIMIT and level <= station_level:
            binding[i] = CHARGER
        else:
            binding[i] = STATION

    # Rule 5: battery and grid, in kW (not steps: the setpoint must cover a base load that is
    # not a whole step exactly). Same operations, in the same order, as the reference.
    ev_kw = ev_total / STEPS_PER_KW
    base_kw = station[BASE_LOAD]
    pv_kw = station[PV_POWER]
    discharge_kw = 0.0
    if station[BATTERY_SOC] > station[BATTERY_MIN_SOC]:
        need = ev_kw + base_kw - pv_kw - station[GRID_CAPACITY]
        discharge_kw = min(station[BATTERY_MAX_DISCHARGE], max(0.0, need))
    charge_kw = 0.0
    if station[BATTERY_SOC] < 100:
        charge_kw = min(station[BATTERY_MAX_CHARGE], max(0.0, pv_kw - base_kw - ev_kw))
    battery_kw = discharge_kw - charge_kw
    station[OUT_BATTERY_POWER] = battery_kw
    station[OUT_GRID_POWER] = base_kw + ev_kw - pv_kw - battery_kw
    return OK
