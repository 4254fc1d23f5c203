"""FROZEN ORACLE: the tree kernel as it was before issue 13's speed-up (pair lists, Newton per limit
slice), kept only for tests/allocator/test_tree_kernel_oracle.py. Do not edit or import elsewhere.

The allocator under an electrical tree: the rules of `reference.py`, jitted, allocation-free.

`kernel.solve` stays the fast path for stations whose only limits are in kW (no circuit, no
charger current limit); `StationArrays.solve` picks this one when the tree is in use.

Every limit is a list of (session, weight) pairs, held twice in scratch: limit by limit (to fill
a limit's level) and session by session (to walk a session's limits). Limit ids are their rank:
chargers' (4 each: power, L1, L2, L3), circuits' deepest first (4 each), the station's.

Progressive filling in rounds instead of one limit at a time. A limit's level computed with its
unfrozen sessions all following the level is a lower bound of the level at which it really
fills (sessions frozen earlier by other limits only unload it), and it is exact when no session
it holds will be frozen lower by another limit: every one of them is at the same value at the
smallest level among its limits (m) as at this limit's level. Each round computes the levels
of limits whose sessions changed (Newton steps, as in `kernel._fill_level`, weighted), then
freezes each session whose smallest-level limit (first in rank on a tie, as the reference
names what binds) is exact. The limit with the smallest level overall is always exact, so
every round freezes something; rounds are few in practice because unrelated limits (chargers
under different circuits) become exact in the same round.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from allocator.kernel import (
    ARRIVAL,
    CAP,
    CHARGER,
    CHARGER_INDEX,
    MIN_POWER,
    MINIMUM,
    NO_LIMIT,
    OK,
    POWER_CAP,
    PRIORITY,
    SESSION_PHASES,
    STATION,
    STEPS_PER_KW,
    VEHICLE,
    VEHICLE_MAX,
    VOLTAGE,
    _heapify,
    _pop,
    _steps_down,
    _steps_up,
    battery_and_grid,
    ev_budget_steps,
)

CIRCUIT = 5  # binding code (request.BINDING_NAMES)
_SNAP = 1e-6
FINE = 10_000  # level resolution per step (reference.FINE)
HUGE = 10**9  # steps: anything larger counts as this (reference.HUGE)

# rows of `charger_i`: circuit index (-1: under the grid connection), phases (1 or 3), the grid
# phase (0..2) of its L1, L2, L3, DC (1: draws balanced on three phases)
CHARGER_CIRCUIT, CHARGER_PHASES, ROTATION, CHARGER_DC = 0, 1, 2, 5
CHARGER_I_ROWS = 6
# rows of `circuit_f`: kW and A (inf: no limit), base power kW, base current A per grid phase
CIRCUIT_MAX_POWER, CIRCUIT_MAX_CURRENT, CIRCUIT_BASE_POWER, CIRCUIT_BASE_CURRENT = 0, 1, 2, 3
CIRCUIT_F_ROWS = 6

SCRATCH_SESSION_ROWS = 11  # the first is the binding_circuit output
SCRATCH_LIMIT_ROWS = 10
SCRATCH_CIRCUIT_ROWS = 3
BAD_CHARGER_INDEX, BAD_CIRCUIT, TOO_MANY_LIMITS = 1, 2, 3


def limit_count(max_chargers: int, max_circuits: int) -> int:
    return 4 * (max_chargers + max_circuits) + 1


def membership_count(max_sessions: int, max_depth: int) -> int:
    """Scratch size of the (session, limit) pairs: charger, each circuit up, the station."""
    return max_sessions * (4 * (max_depth + 2) + 1)


@njit(cache=True)
def _sixths_down(amps, voltage):  # noqa: ANN001
    """A current limit in A to whole sixths of a fine step (reference.sixths_down)."""
    if amps != amps:
        return np.int64(0)
    sixths = amps * 0.6 * voltage
    if sixths >= 6 * HUGE:
        return NO_LIMIT
    return max(np.int64(math.floor(sixths * FINE + _SNAP)), np.int64(0))


@njit(cache=True)
def _fine(steps):  # noqa: ANN001
    """A power limit in steps at the level resolution (reference.fine)."""
    if steps >= HUGE:
        return NO_LIMIT
    return max(steps, 0) * FINE


@njit(cache=True, inline="always")
def _limit_level(L, lim_mem, lim_w, lim_end, start, fixed, level0, capacity,  # noqa: ANN001
                 low, high, frozen, value):
    """The highest whole level at which limit L holds (NO_LIMIT: it never fills), from level0
    where it holds. Frozen sessions and sessions at their ceiling leave L's slice for good
    (levels only rise): their weight moves into fixed[L]. Accumulators are locals so they
    stay in registers: this loop is the kernel's hot spot."""
    level = level0
    end = lim_end[L]
    gone = fixed[L]  # weight of the sessions that left the slice
    while True:
        fill = 0
        slope = 0
        top = 0  # the fill with every session at its ceiling
        next_low = NO_LIMIT
        kept = start
        for k in range(start, end):
            i = lim_mem[k]
            w = lim_w[k]
            if frozen[i]:
                gone += w * value[i]
                continue
            h = high[i]
            if level >= h:  # leaves at its ceiling; solve_tree corrects fixed[L] if another
                gone += w * h  # limit freezes it lower later
                continue
            lim_mem[kept] = i
            lim_w[kept] = w
            kept += 1
            top += w * h
            lo = low[i]
            if level < lo:
                fill += w * lo
                if lo < next_low:
                    next_low = lo
            else:
                fill += w * level
                slope += w
        end = kept
        fill += gone
        if top + gone <= capacity:  # holds even at every ceiling: it never fills
            level = NO_LIMIT
            break
        if slope == 0:
            if next_low == NO_LIMIT:
                level = NO_LIMIT
                break
            level = next_low
        else:
            step = (capacity - fill) // slope
            if step <= 0:
                break
            level = min(level + step, next_low)
    lim_end[L] = end
    fixed[L] = gone
    return level


@njit(cache=True)
def _clamp(t, lo, hi):  # noqa: ANN001
    return max(lo, min(t, hi))


def work_size(max_chargers: int, max_sessions: int, max_circuits: int, max_depth: int) -> int:
    """Length of the one int64 scratch array (its first max_sessions + 1 cells are the
    binding_circuit output)."""
    return (SCRATCH_SESSION_ROWS * (max_sessions + 1)
            + SCRATCH_LIMIT_ROWS * (limit_count(max_chargers, max_circuits) + 1)
            + SCRATCH_CIRCUIT_ROWS * (max_circuits + 2)
            + 4 * membership_count(max_sessions, max_depth))


@njit(cache=True)
def solve_tree(station, n_chargers, charger_f, charger_i, n_circuits, circuit_f,  # noqa: ANN001, C901
               circuit_parent, n_sessions, session_f, session_i, allocation, binding, work):
    """Allocate one cycle under the tree. Inputs and outputs as `kernel.solve`, plus:

    charger_f: float64[2, >= n_chargers] kW, A per phase (inf: none)
    charger_i: int64[CHARGER_I_ROWS, >= n_chargers]
    circuit_f: float64[CIRCUIT_F_ROWS, >= n_circuits]; circuit_parent: int64 (-1: root)
    work: int64[work_size(...)], sized from the arrays' second dimensions; its first cells are
    the binding_circuit output: the circuit index for binding CIRCUIT, else -1.
    Few arguments on purpose: numba's dispatch costs per argument.
    """
    ms = session_f.shape[1] + 1
    nl = 4 * (charger_i.shape[1] + circuit_f.shape[1]) + 2
    nk = circuit_f.shape[1] + 2
    binding_circuit = work[0:ms]
    at = ms
    scratch_s = work[at:at + (SCRATCH_SESSION_ROWS - 1) * ms].reshape((SCRATCH_SESSION_ROWS - 1, ms))
    at += (SCRATCH_SESSION_ROWS - 1) * ms
    scratch_l = work[at:at + SCRATCH_LIMIT_ROWS * nl].reshape((SCRATCH_LIMIT_ROWS, nl))
    at += SCRATCH_LIMIT_ROWS * nl
    scratch_c = work[at:at + SCRATCH_CIRCUIT_ROWS * nk].reshape((SCRATCH_CIRCUIT_ROWS, nk))
    at += SCRATCH_CIRCUIT_ROWS * nk
    pairs = (work.shape[0] - at) // 4
    sess_lim = work[at:at + pairs]
    sess_w = work[at + pairs:at + 2 * pairs]
    lim_mem = work[at + 2 * pairs:at + 3 * pairs]
    lim_w = work[at + 3 * pairs:at + 4 * pairs]
    charger_max = charger_f[0]
    charger_current = charger_f[1]
    n = n_sessions
    voltage = station[VOLTAGE]
    charger_of = session_i[CHARGER_INDEX]
    arrival = session_i[ARRIVAL]
    priority = session_f[PRIORITY]
    for i in range(n):
        if charger_of[i] < 0 or charger_of[i] >= n_chargers:
            return BAD_CHARGER_INDEX
    for j in range(n_chargers):
        c = charger_i[CHARGER_CIRCUIT, j]
        if c < -1 or c >= n_circuits:
            return BAD_CIRCUIT

    ceiling = scratch_s[0]
    low = scratch_s[1]
    frozen = scratch_s[2]  # 1: paused or frozen at value
    value = scratch_s[3]
    least = scratch_s[4]  # m: the smallest level among a session's open limits
    first = scratch_s[5]  # the first limit (in rank) at that level; later what froze it
    sess_off = scratch_s[6]  # session i's limits are sess_lim[sess_off[i]:sess_off[i + 1]]
    heap = scratch_s[7]
    capped = scratch_s[8]
    mark = scratch_s[9]
    capacity = scratch_l[0]
    level = scratch_l[1]
    fixed = scratch_l[2]
    lim_off = scratch_l[3]
    lim_end = scratch_l[4]
    is_open = scratch_l[5]
    dirty = scratch_l[6]
    exact = scratch_l[7]
    load = scratch_l[8]
    owner = scratch_l[9]  # the circuit index of a circuit's limit, else -1
    depth = scratch_c[0]
    position = scratch_c[1]  # a circuit's place in rank order (deepest first)
    count = scratch_c[2]

    # Circuit ranks: depth by walking up (a walk longer than the forest is a cycle), then a
    # counting sort, deepest first, stable by index.
    max_depth = 0
    for c in range(n_circuits):
        d = 0
        k = circuit_parent[c]
        while k != -1:
            if k < -1 or k >= n_circuits or d >= n_circuits:
                return BAD_CIRCUIT
            d += 1
            k = circuit_parent[k]
        depth[c] = d
        max_depth = max(max_depth, d)
    for d in range(max_depth + 2):
        count[d] = 0
    for c in range(n_circuits):
        count[max_depth - depth[c] + 1] += 1
    for d in range(max_depth + 1):
        count[d + 1] += count[d]
    for c in range(n_circuits):
        position[c] = count[max_depth - depth[c]]
        count[max_depth - depth[c]] += 1
    if n * (4 * (max_depth + 2) + 1) > sess_lim.shape[0]:
        return TOO_MANY_LIMITS

    # Limits: capacities (NO_LIMIT: none) in rank order.
    n_limits = 4 * (n_chargers + n_circuits) + 1
    for L in range(n_limits):
        owner[L] = -1
    for j in range(n_chargers):
        capacity[4 * j] = _fine(_steps_down(charger_max[j]))
        amps = _sixths_down(charger_current[j], voltage)
        for p in range(3):
            capacity[4 * j + 1 + p] = amps
    for c in range(n_circuits):
        b = 4 * (n_chargers + position[c])
        mp = circuit_f[CIRCUIT_MAX_POWER, c]
        capacity[b] = NO_LIMIT
        if mp < 1e13:
            capacity[b] = _fine(_steps_down(mp) - _steps_up(circuit_f[CIRCUIT_BASE_POWER, c]))
        mc = circuit_f[CIRCUIT_MAX_CURRENT, c]
        for p in range(3):
            capacity[b + 1 + p] = NO_LIMIT
            if mc < 1e13:
                capacity[b + 1 + p] = _sixths_down(mc - circuit_f[CIRCUIT_BASE_CURRENT + p, c], voltage)
        for q in range(4):
            owner[b + q] = c
    station_limit = n_limits - 1
    capacity[station_limit] = _fine(ev_budget_steps(station))

    # Sessions: ceilings, minimums, and their limits with weights (session by session).
    pos = 0
    for i in range(n):
        j = charger_of[i]
        vehicle = _steps_down(session_f[VEHICLE_MAX, i])
        cap = _steps_down(session_f[POWER_CAP, i])
        ceiling[i] = min(min(vehicle, cap), HUGE) * FINE
        capped[i] = 1 if cap < vehicle else 0
        low[i] = min(_steps_up(session_f[MIN_POWER, i]), HUGE + 1) * FINE if ceiling[i] > 0 else 0
        # the grid phases it draws on: its charger's first k conductors, rotated; DC: all three
        k = 3
        if charger_i[CHARGER_DC, j] == 0:
            k = charger_i[CHARGER_PHASES, j]
            if 0 < session_i[SESSION_PHASES, i] < k:
                k = session_i[SESSION_PHASES, i]
        w = 6 // k
        sess_off[i] = pos
        b = 4 * j
        c = -2  # the charger first, then each circuit up, then the station
        while True:
            if capacity[b] != NO_LIMIT:
                sess_lim[pos] = b
                sess_w[pos] = 1
                pos += 1
            if capacity[b + 1] != NO_LIMIT:  # the three phases of a group are limited together
                for q in range(k):
                    p = q if charger_i[CHARGER_DC, j] else charger_i[ROTATION + q, j]
                    sess_lim[pos] = b + 1 + p
                    sess_w[pos] = w
                    pos += 1
            c = charger_i[CHARGER_CIRCUIT, j] if c == -2 else circuit_parent[c]
            if c == -1:
                break
            b = 4 * (n_chargers + position[c])
        sess_lim[pos] = station_limit
        sess_w[pos] = 1
        pos += 1
    sess_off[n] = pos

    # The same pairs limit by limit (counting sort).
    for L in range(n_limits + 1):
        lim_off[L] = 0
    for e in range(pos):
        lim_off[sess_lim[e] + 1] += 1
    for L in range(n_limits):
        lim_off[L + 1] += lim_off[L]
        lim_end[L] = lim_off[L]
    for i in range(n):
        for e in range(sess_off[i], sess_off[i + 1]):
            L = sess_lim[e]
            lim_mem[lim_end[L]] = i
            lim_w[lim_end[L]] = sess_w[e]
            lim_end[L] += 1

    # Rule 2a: a minimum that exceeds the ceiling or, alone, one of its charger's limits.
    for i in range(n):
        frozen[i] = 0
        value[i] = 0
        mark[i] = -1
        if low[i] > ceiling[i]:
            frozen[i] = 1
            continue
        j4 = 4 * charger_of[i]
        for e in range(sess_off[i], sess_off[i + 1]):
            L = sess_lim[e]
            if L < j4 + 4 and sess_w[e] * low[i] > capacity[L]:
                frozen[i] = 1

    # Rule 2b: group by group in rank order, pause while a limit cannot hold its minimums.
    n_groups = n_chargers + n_circuits + 1
    for g in range(n_groups):
        b = 4 * g
        top = min(b + 4, n_limits)
        over = 0
        for L in range(b, top):
            load[L] = 0
            if capacity[L] == NO_LIMIT:
                continue
            for e in range(lim_off[L], lim_end[L]):
                i = lim_mem[e]
                if not frozen[i]:
                    load[L] += lim_w[e] * low[i]
            if load[L] > capacity[L]:
                over += 1
        if over == 0:
            continue
        size = 0
        for L in range(b, top):
            if capacity[L] == NO_LIMIT:
                continue
            for e in range(lim_off[L], lim_end[L]):
                i = lim_mem[e]
                if mark[i] != g and not frozen[i] and low[i] > 0:
                    mark[i] = g
                    heap[size] = i
                    size += 1
        _heapify(heap, size, priority, arrival)
        while over > 0 and size > 0:
            i = _pop(heap, size, priority, arrival)
            size -= 1
            weighs = False
            for e in range(sess_off[i], sess_off[i + 1]):
                L = sess_lim[e]
                if b <= L < top and load[L] > capacity[L]:
                    weighs = True
            if not weighs:
                continue
            frozen[i] = 1
            for e in range(sess_off[i], sess_off[i + 1]):
                L = sess_lim[e]
                if b <= L < top:
                    was_over = load[L] > capacity[L]
                    load[L] -= sess_w[e] * low[i]
                    if was_over and load[L] <= capacity[L]:
                        over -= 1

    # Rule 3: progressive filling, in rounds.
    for L in range(n_limits):
        lim_end[L] = lim_off[L + 1]
        fixed[L] = 0
        level[L] = 0
        is_open[L] = 1 if capacity[L] != NO_LIMIT and lim_off[L + 1] > lim_off[L] else 0
        dirty[L] = 1
    for i in range(n):
        first[i] = -1
    while True:
        any_open = False
        for L in range(n_limits):
            if is_open[L] and dirty[L]:
                dirty[L] = 0
                level[L] = _limit_level(L, lim_mem, lim_w, lim_end, lim_off[L], fixed, level[L],
                                        capacity[L], low, ceiling, frozen, value)
                if level[L] == NO_LIMIT:
                    is_open[L] = 0
            if is_open[L]:
                any_open = True
                exact[L] = 1
        if not any_open:
            break
        for i in range(n):
            if frozen[i]:
                continue
            m = NO_LIMIT
            f = -1
            for e in range(sess_off[i], sess_off[i + 1]):
                L = sess_lim[e]
                if is_open[L] and level[L] < m:  # limits come in rank order: first on a tie
                    m = level[L]
                    f = L
            least[i] = m
            first[i] = f
        for i in range(n):
            if frozen[i] or first[i] == -1:
                continue
            x = _clamp(least[i], low[i], ceiling[i])
            for e in range(sess_off[i], sess_off[i + 1]):
                L = sess_lim[e]
                if is_open[L] and exact[L] and _clamp(level[L], low[i], ceiling[i]) != x:
                    exact[L] = 0
        for i in range(n):
            if frozen[i] or first[i] == -1 or not exact[first[i]]:
                continue
            frozen[i] = 1
            x = _clamp(least[i], low[i], ceiling[i])
            value[i] = x
            for e in range(sess_off[i], sess_off[i + 1]):
                L = sess_lim[e]
                dirty[L] = 1
                if is_open[L] and level[L] >= ceiling[i] and x < ceiling[i]:
                    fixed[L] -= sess_w[e] * (ceiling[i] - x)  # it left L at its ceiling

    ev_total = 0
    for i in range(n):
        binding_circuit[i] = -1
        if frozen[i] and first[i] == -1:  # paused (rule 2), or frozen by nothing
            allocation[i] = 0.0
            binding[i] = MINIMUM
            continue
        x = value[i] if frozen[i] else ceiling[i]
        steps = x // FINE  # rounded down to its step
        ev_total += steps
        allocation[i] = steps / STEPS_PER_KW
        if x >= ceiling[i]:  # Rule 4
            binding[i] = CAP if capped[i] else VEHICLE
        else:
            L = first[i]
            if L == station_limit:
                binding[i] = STATION
            elif owner[L] >= 0:
                binding[i] = CIRCUIT
                binding_circuit[i] = owner[L]
            else:
                binding[i] = CHARGER
    battery_and_grid(station, ev_total)
    return OK
