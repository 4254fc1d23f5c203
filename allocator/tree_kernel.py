"""The allocator under an electrical tree: the rules of `reference.py`, jitted, allocation-free.

`kernel.solve` stays the fast path for stations whose only limits are in kW (no circuit, no
charger current limit); `StationArrays.solve` picks this one when the tree is in use.

Limits come in groups: each charger, each circuit (deepest first), the station; group g's limits
are 4 g + (0: power, 1 + p: grid phase p), in rank order. Sessions are laid out group by group
(`act`: a counting sort by charger, chargers and circuits placed under their parents), so the
sessions of every limit are one range of `act` (for a phase limit, those of the range with a
weight on that phase): no per-limit membership lists are built. Every group comes before its
parent in rank order, so what a limit needs from its sessions (loads, bounds) is summed charger
by charger and pushed up group by group, and what a session needs from its limits (the smallest
level above it) is pushed down.

Progressive filling in rounds instead of one limit at a time. A limit's level computed with its
unfrozen sessions all following the level is a lower bound of the level at which it really
fills (sessions frozen earlier by other limits only unload it), and it is exact when no session
it holds will be frozen lower by another limit: every one of them is at the same value at the
smallest level among its limits (m) as at this limit's level. Each round computes the levels
of limits whose sessions changed (Newton steps, as in `kernel._fill_level`, weighted; a limit
whose frozen load plus its moving sessions' ceilings fits never fills and is closed without a
scan), then freezes each session whose smallest-level limit (first in rank on a tie, as the
reference names what binds) is exact. The limit with the smallest level overall is always exact, so
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

SCRATCH_SESSION_ROWS = 19  # the first is the binding_circuit output; one more cell each
SCRATCH_LIMIT_ROWS = 13
SCRATCH_GROUP_ROWS = 14
SCRATCH_CIRCUIT_ROWS = 4
BAD_CHARGER_INDEX, BAD_CIRCUIT = 1, 2


def work_size(max_chargers: int, max_sessions: int, max_circuits: int) -> int:
    """Length of the one int64 scratch array (its first max_sessions + 1 cells are the
    binding_circuit output)."""
    groups = max_chargers + max_circuits + 1
    return (SCRATCH_SESSION_ROWS * (max_sessions + 1) + SCRATCH_LIMIT_ROWS * 4 * groups
            + SCRATCH_GROUP_ROWS * groups + SCRATCH_CIRCUIT_ROWS * (max_circuits + 2))


@njit(cache=True)
def _sixths_down(amps, voltage):  # noqa: ANN001
    """A current limit in A to whole sixths of a fine step (reference.sixths_down)."""
    if amps != amps:
        return np.int64(0)
    sixths = amps * 0.6 * voltage
    if sixths >= 6 * HUGE:
        return NO_LIMIT
    return _max(np.int64(math.floor(sixths * FINE + _SNAP)), np.int64(0))


@njit(cache=True)
def _fine(steps):  # noqa: ANN001
    """A power limit in steps at the level resolution (reference.fine)."""
    if steps >= HUGE:
        return NO_LIMIT
    return _max(steps, 0) * FINE


# min and max of two integers, written out: numba's builtins were left as out-of-line calls in
# this large function (perf: in _level's scalar loop, over ranges shorter than a vector).
@njit(cache=True, inline="always")
def _min(a, b):  # noqa: ANN001
    return a if a <= b else b


@njit(cache=True, inline="always")
def _max(a, b):  # noqa: ANN001
    return a if a >= b else b


@njit(cache=True, inline="always")
def _clamp(t, lo, hi):  # noqa: ANN001
    return _max(lo, _min(t, hi))


@njit(cache=True, inline="always")
def _level(weight, low, high, start, end, gone, level, capacity, least_low):  # noqa: ANN001
    """The highest whole level at which a limit holds, from `level` where it holds; the caller
    knows it fills (its load with every session at its ceiling exceeds the capacity). Its moving
    sessions are [start, end) of the session rows kept in `act` order (weight 0: a session of
    the range not on this limit's phase); gone is the load of its frozen ones. least_low: the
    smallest minimum of its moving sessions when the caller knows it (the first round), else -1.

    Newton steps from below, weighted, as in `kernel._fill_level`: the load is piecewise linear
    in the level and its slope only falls between two minimums, so a step to the capacity on the
    current slope, stopped at the next minimum, never overshoots. Each step is one branch-free
    pass over three arrays in order, which LLVM vectorises: this loop is the kernel's hot spot."""
    # Views from 0: numba then knows every index is >= 0 and LLVM vectorises with plain loads.
    weight = weight[start:end]
    low = low[start:end]
    high = high[start:end]
    if level == 0:  # the first time: below every minimum the load is flat, start there
        if least_low < 0:
            least_low = NO_LIMIT
            for k in range(end - start):
                least_low = _min(least_low, low[k] if weight[k] > 0 else NO_LIMIT)
        level = _max(level, least_low)  # (ceilings are not below minimums)
    while True:
        fill = gone
        slope = 0
        next_low = NO_LIMIT  # the next minimum above the level
        next_high = NO_LIMIT  # the next ceiling above it of a session following the level
        for k in range(end - start):
            w = weight[k]
            lo = low[k]
            h = high[k]
            fill += w * _max(lo, _min(level, h))
            slope += w if lo <= level < h else 0
            next_low = _min(next_low, lo if lo > level and w > 0 else NO_LIMIT)
            next_high = _min(next_high, h if lo <= level < h and w > 0 else NO_LIMIT)
        if slope == 0:
            if next_low == NO_LIMIT:  # cannot happen when it fills; kept for safety
                return NO_LIMIT
            level = next_low
        else:
            step = (capacity - fill) // slope
            if step <= 0:
                return level
            if level + step < _min(next_low, next_high):
                # linear up to level + step + 1, where the load exceeds the capacity: done
                # without the pass that would confirm it
                return level + step
            level = _min(level + step, next_low)


@njit(cache=True)
def _compact(act, rows, n_act, frozen, new_at, start, end, live, n_live, nc, n_groups, all_chargers):  # noqa: ANN001
    """Drop the frozen sessions from act[:n_act] (and their columns of `rows`, kept in act
    order) and the chargers left without any from live[:n_live] (all_chargers: every charger,
    0 .. nc - 1); the ranges of the live chargers and of the circuits and the station follow.
    Returns the new counts."""
    kept = 0
    for k in range(n_act):
        new_at[k] = kept
        i = act[k]
        if not frozen[i]:
            if kept < k:
                act[kept] = i
                for r in range(rows.shape[0]):
                    rows[r, kept] = rows[r, k]
            kept += 1
    new_at[n_act] = kept
    still = 0
    for x in range(nc if all_chargers else n_live):
        j = x if all_chargers else live[x]
        start[j] = new_at[start[j]]
        end[j] = new_at[end[j]]
        if end[j] > start[j]:
            live[still] = j
            still += 1
    for g in range(nc, n_groups):
        start[g] = new_at[start[g]]
        end[g] = new_at[end[g]]
    return kept, still


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
    ng = charger_i.shape[1] + circuit_f.shape[1] + 1
    nk = circuit_f.shape[1] + 2
    binding_circuit = work[0:ms]
    at = ms
    scratch_s = work[at:at + (SCRATCH_SESSION_ROWS - 1) * ms].reshape((SCRATCH_SESSION_ROWS - 1, ms))
    at += (SCRATCH_SESSION_ROWS - 1) * ms
    scratch_l = work[at:at + SCRATCH_LIMIT_ROWS * 4 * ng].reshape((SCRATCH_LIMIT_ROWS, 4 * ng))
    at += SCRATCH_LIMIT_ROWS * 4 * ng
    scratch_g = work[at:at + SCRATCH_GROUP_ROWS * ng].reshape((SCRATCH_GROUP_ROWS, ng))
    at += SCRATCH_GROUP_ROWS * ng
    scratch_c = work[at:at + SCRATCH_CIRCUIT_ROWS * nk].reshape((SCRATCH_CIRCUIT_ROWS, nk))
    charger_max = charger_f[0]
    charger_current = charger_f[1]
    n = n_sessions
    nc = n_chargers
    voltage = station[VOLTAGE]
    charger_of = session_i[CHARGER_INDEX]
    arrival = session_i[ARRIVAL]
    priority = session_f[PRIORITY]
    for i in range(n):
        if charger_of[i] < 0 or charger_of[i] >= nc:
            return BAD_CHARGER_INDEX
    for j in range(nc):
        c = charger_i[CHARGER_CIRCUIT, j]
        if c < -1 or c >= n_circuits:
            return BAD_CIRCUIT

    ceiling = scratch_s[0]
    low = scratch_s[1]
    frozen = scratch_s[2]  # 1: paused or frozen at value
    value = scratch_s[3]
    first = scratch_s[4]  # the first limit (in rank) at its smallest level; later what froze it
    capped = scratch_s[5]
    heap = scratch_s[6]
    act = scratch_s[7]  # sessions by group (each group's are act[start[g]:end[g]]), later the active only
    new_at = scratch_s[8]
    wt = scratch_s[9]  # weight on each of its phases: 6 // phases
    n_phases = scratch_s[10]
    # by act: minimum, ceiling, weight on each grid phase, the phases it draws on; then the
    # weight on power, 1 for all, which the compactions need not move (the last row)
    in_order = scratch_s[11:18]
    act_low = in_order[0]
    act_high = in_order[1]
    act_k = in_order[5]
    capacity = scratch_l[0]
    level = scratch_l[1]
    is_open = scratch_l[2]
    dirty = scratch_l[3]
    fixed = scratch_l[4]  # the load of the limit's frozen sessions
    load = scratch_l[5]  # rule 2: the minimums held; rule 3: the load frozen this round
    ceilings = scratch_l[6]  # the load of its moving sessions at their ceilings
    slack = scratch_l[8]  # see "exact" below
    settled = scratch_l[9]  # rule 3: their part of it frozen this round
    best = scratch_l[7]  # the smallest open level on the way up from the group, per component
    best_at = scratch_l[10]  # the (first) limit there
    cells = scratch_l[11]  # the limits a round visits
    lows = scratch_l[12]  # the smallest minimum of the limit's moving sessions, for the first round
    parent = scratch_g[0]  # the group above (the station: -1)
    start = scratch_g[1]
    end = scratch_g[2]
    cursor = scratch_g[3]
    live = scratch_g[4]  # the chargers with moving sessions
    open_phase = scratch_g[5]  # a charger's only phase limit that can be open (see below)
    conductors = scratch_g[6]  # a charger's grid phase of conductor q at bits 2q, 2q + 1
    most = scratch_g[13]  # the phases its sessions can draw on (DC: 3 + 4)
    m_k = scratch_g[7:10]  # per charger, for its sessions on k = q + 1 phases: m
    f_k = scratch_g[10:13]  # and the first limit there (-1: none)
    depth = scratch_c[0]
    position = scratch_c[1]  # a circuit's place in rank order (deepest first)
    count = scratch_c[2]
    by_rank = scratch_c[3]

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
        max_depth = _max(max_depth, d)
    for d in range(max_depth + 2):
        count[d] = 0
    for c in range(n_circuits):
        count[max_depth - depth[c] + 1] += 1
    for d in range(max_depth + 1):
        count[d + 1] += count[d]
    for c in range(n_circuits):
        position[c] = count[max_depth - depth[c]]
        count[max_depth - depth[c]] += 1
        by_rank[position[c]] = c

    # Groups in rank order: chargers, circuits deepest first, the station. A group's limits are
    # 4 g + (0: power, 1 + p: grid phase p). Every group comes before its parent.
    n_groups = nc + n_circuits + 1
    top = n_groups - 1
    n_cells = 4 * n_groups
    for j in range(nc):
        c = charger_i[CHARGER_CIRCUIT, j]
        parent[j] = top if c == -1 else nc + position[c]
    for c in range(n_circuits):
        k = circuit_parent[c]
        parent[nc + position[c]] = top if k == -1 else nc + position[k]
    parent[top] = -1

    # Limits: capacities (NO_LIMIT: none) in rank order. A charger's wiring: the grid phase of
    # each conductor (DC: the three in order), the phase limit of its first one (see below).
    c0 = 4 * nc  # the circuits' and the station's limits are c0 .. n_cells - 1
    for L in range(c0, n_cells):
        capacity[L] = NO_LIMIT
        load[L] = 0
    for j in range(nc):
        capacity[4 * j] = _fine(_steps_down(charger_max[j]))
        amps = _sixths_down(charger_current[j], voltage)
        for p in range(3):
            capacity[4 * j + 1 + p] = amps
            load[4 * j + p] = 0
        load[4 * j + 3] = 0
        dc = charger_i[CHARGER_DC, j] != 0
        wired = 0b100100 if dc else (
            charger_i[ROTATION, j] | charger_i[ROTATION + 1, j] << 2 | charger_i[ROTATION + 2, j] << 4)
        conductors[j] = wired
        open_phase[j] = 4 * j + 1 + (wired & 3)
        most[j] = 7 if dc else charger_i[CHARGER_PHASES, j]
    for c in range(n_circuits):
        b = 4 * (nc + position[c])
        mp = circuit_f[CIRCUIT_MAX_POWER, c]
        if mp < 1e13:
            capacity[b] = _fine(_steps_down(mp) - _steps_up(circuit_f[CIRCUIT_BASE_POWER, c]))
        mc = circuit_f[CIRCUIT_MAX_CURRENT, c]
        if mc < 1e13:
            for p in range(3):
                capacity[b + 1 + p] = _sixths_down(mc - circuit_f[CIRCUIT_BASE_CURRENT + p, c], voltage)
    capacity[4 * top] = _fine(ev_budget_steps(station))

    # Sessions: ceilings, minimums, the grid phases they draw on (their charger's first k
    # conductors, rotated; DC: all three); rule 2a; rule 2b's loads on their chargers.
    # The conversions first, in a loop of their own that reads nothing indirectly: LLVM
    # vectorises it (perf).
    vehicle_max = session_f[VEHICLE_MAX]
    power_cap = session_f[POWER_CAP]
    min_power = session_f[MIN_POWER]
    for i in range(n):
        vehicle = _steps_down(vehicle_max[i])
        cap = _steps_down(power_cap[i])
        top_i = _min(_min(vehicle, cap), HUGE) * FINE
        ceiling[i] = top_i
        capped[i] = 1 if cap < vehicle else 0
        low[i] = _min(_steps_up(min_power[i]), HUGE + 1) * FINE if top_i > 0 else 0
    for g in range(n_groups):
        cursor[g] = 0
    session_phases = session_i[SESSION_PHASES]
    n_frozen = 0  # by rule 2a or 2b: none (the usual case) and the compaction below is skipped
    for i in range(n):
        j = charger_of[i]
        most_j = most[j]  # (DC: 3, whatever the EV says, marked by bit 2)
        k = most_j & 3
        asked = session_phases[i]
        k = asked if (most_j < 4) & (0 < asked) & (asked < k) else k
        n_phases[i] = k
        w = (0x020306 >> (8 * k - 8)) & 0xFF  # 6 // k, without a division or a branch
        wt[i] = w
        # Loops over the three conductors, not the k drawn on, with the others weighing 0: a
        # trip count that varies from session to session costs a mispredicted branch each.
        wired = conductors[j]
        cursor[j] += 1
        # Rule 2a: a minimum that exceeds the ceiling or, alone, one of its charger's limits.
        value[i] = 0
        first[i] = -1
        lo = low[i]
        j4 = 4 * j
        bad = lo > ceiling[i] or lo > capacity[j4]
        for q in range(3):
            bad |= q < k and w * lo > capacity[j4 + 1 + ((wired >> (2 * q)) & 3)]
        frozen[i] = 1 if bad else 0
        n_frozen += bad
        if not bad:
            load[j4] += lo
            for q in range(3):
                load[j4 + 1 + ((wired >> (2 * q)) & 3)] += w * lo if q < k else 0

    # Sessions laid out by group, so that every limit's sessions are one range of act (filtered
    # by phase): subtree sizes bottom-up, offsets top-down, then a counting sort by charger.
    for g in range(n_groups):
        end[g] = cursor[g]  # for now: sessions under the group
    for g in range(top):
        end[parent[g]] += end[g]
    start[top] = 0
    cursor[top] = 0
    for g in range(top - 1, -1, -1):
        start[g] = cursor[parent[g]]
        cursor[parent[g]] += end[g]
        cursor[g] = start[g]
    for g in range(n_groups):
        end[g] += start[g]
    for i in range(n):
        act[cursor[charger_of[i]]] = i
        cursor[charger_of[i]] += 1

    # Rule 2b: group by group in rank order, pause while a limit cannot hold its minimums.
    # A group's load is its children's (final: they come first), pushed up once it is done.
    # The heap takes the group's sessions in layout order: only sessions equal in priority and
    # arrival (never from allocate(), which ranks arrival by row) could pop in another order.
    for g in range(n_groups):
        b = 4 * g
        over = 0
        for L in range(b, b + 4):
            if load[L] > capacity[L]:
                over += 1
        if over > 0:
            size = 0
            for k in range(start[g], end[g]):
                i = act[k]
                if frozen[i] or low[i] == 0:
                    continue
                held = capacity[b] != NO_LIMIT
                for q in range(n_phases[i]):
                    if capacity[b + 1 + ((conductors[charger_of[i]] >> (2 * q)) & 3)] != NO_LIMIT:
                        held = True
                if held:
                    heap[size] = i
                    size += 1
            _heapify(heap, size, priority, arrival)
            while over > 0 and size > 0:
                i = _pop(heap, size, priority, arrival)
                size -= 1
                weighs = load[b] > capacity[b]
                for q in range(n_phases[i]):
                    L = b + 1 + ((conductors[charger_of[i]] >> (2 * q)) & 3)
                    if load[L] > capacity[L]:
                        weighs = True
                if not weighs:
                    continue
                frozen[i] = 1
                n_frozen += 1
                for q in range(n_phases[i] + 1):
                    L = b if q == 0 else b + 1 + ((conductors[charger_of[i]] >> (2 * q - 2)) & 3)
                    was_over = load[L] > capacity[L]
                    load[L] -= low[i] if q == 0 else wt[i] * low[i]
                    if was_over and load[L] <= capacity[L]:
                        over -= 1
        if g < top:
            for q in range(4):
                load[4 * parent[g] + q] += load[b + q]

    # Rule 3: progressive filling, in rounds, over the sessions still moving. Chargers whose
    # sessions are all frozen drop out of the rounds (their limits can no longer fill).
    # (in_order is filled below, once the paused sessions are out)
    if n_frozen > 0:
        n_act, n_live = _compact(act, in_order[:0], n, frozen, new_at, start, end, live, 0, nc, n_groups, True)
    else:  # act and the ranges stay; the live chargers: those with sessions
        n_act = n
        n_live = 0
        for j in range(nc):
            live[n_live] = j
            n_live += end[j] > start[j]
    # A closed limit's level is NO_LIMIT (so that the smallest level above a session needs no
    # look at is_open); an open one's starts at 0 (_level: the first time).
    # A charger's phase limits share one capacity, and every session on it draws on its first
    # conductor (each of its phases with the same weight): that phase's limit holds the others'
    # sessions and loads, so its level is never above theirs and, first in the sessions' order,
    # it wins every tie. The other two never name what binds nor decide a freeze: never opened
    # (nor read from here on). The ceilings and minimums of the two are set below.
    for j in range(nc):
        for L in (4 * j, open_phase[j]):
            level[L] = 0 if capacity[L] != NO_LIMIT else NO_LIMIT
            fixed[L] = 0
            dirty[L] = 1
            is_open[L] = 1 if capacity[L] != NO_LIMIT else 0
    for L in range(c0, n_cells):
        level[L] = 0 if capacity[L] != NO_LIMIT else NO_LIMIT
        fixed[L] = 0
        dirty[L] = 1
        is_open[L] = 1 if capacity[L] != NO_LIMIT else 0
        ceilings[L] = 0
        lows[L] = NO_LIMIT
    # A limit fills only while its frozen load plus its moving sessions' ceilings exceed its
    # capacity: kept per limit as sessions freeze, it closes most limits without a scan.
    # Charger by charger, sums in registers: its two limits that can be open, then its
    # circuit's (conductor q weighs on the grid phase it is wired to for the sessions drawing on
    # more than q phases), then bottom-up over the circuits.
    for x in range(n_live):
        j = live[x]
        j4 = 4 * j
        c4 = 4 * parent[j]
        j1 = open_phase[j]
        wired = conductors[j]
        top_p = 0
        top_0 = 0
        top_1 = 0
        top_2 = 0
        low_p = NO_LIMIT
        low_1 = NO_LIMIT
        low_2 = NO_LIMIT
        for k in range(start[j], end[j]):
            i = act[k]
            lo = low[i]
            hi = ceiling[i]
            w = wt[i]
            kk = n_phases[i]
            act_low[k] = lo
            act_high[k] = hi
            act_k[k] = kk
            for q in range(3):  # (the row of grid phase p: 0 if it does not draw on it)
                in_order[2 + ((wired >> (2 * q)) & 3), k] = w if q < kk else 0
            top_p += hi
            top_0 += w * hi
            top_1 += w * hi if kk > 1 else 0
            top_2 += w * hi if kk > 2 else 0
            low_p = _min(low_p, lo)
            low_1 = _min(low_1, lo if kk > 1 else NO_LIMIT)
            low_2 = _min(low_2, lo if kk > 2 else NO_LIMIT)
        ceilings[j4] = top_p
        ceilings[j1] = top_0
        lows[j4] = low_p
        lows[j1] = low_p  # (every session draws on its first conductor)
        ceilings[c4] += top_p
        lows[c4] = _min(lows[c4], low_p)
        for q in range(3):
            L = c4 + 1 + ((wired >> (2 * q)) & 3)
            ceilings[L] += top_0 if q == 0 else (top_1 if q == 1 else top_2)
            lows[L] = _min(lows[L], low_p if q == 0 else (low_1 if q == 1 else low_2))
    for L in range(c0, n_cells - 4):  # not the station's
        up = 4 * parent[L >> 2] + (L & 3)
        ceilings[up] += ceilings[L]
        lows[up] = _min(lows[up], lows[L])
    in_order[6, :n_act] = 1
    first_round = True
    while True:
        # The levels of the limits whose sessions changed: the live chargers' (the two of each
        # that can be open), then the rest.
        any_open = False
        n_visit = 0
        for x in range(n_live):
            j = live[x]
            cells[n_visit] = 4 * j
            cells[n_visit + 1] = open_phase[j]
            n_visit += 2
        for x in range(n_visit + n_cells - c0):
            L = cells[x] if x < n_visit else c0 + x - n_visit
            if is_open[L] and dirty[L]:
                dirty[L] = 0
                if fixed[L] + ceilings[L] <= capacity[L]:  # holds at every ceiling: never fills
                    is_open[L] = 0
                    level[L] = NO_LIMIT
                else:
                    g = L >> 2
                    weight = in_order[6 if (L & 3) == 0 else 1 + (L & 3)]
                    level[L] = _level(weight, act_low, act_high, start[g], end[g], fixed[L],
                                      level[L], capacity[L], lows[L] if first_round else -1)
            if is_open[L]:
                any_open = True
        if not any_open:
            break
        first_round = False
        # Each session's m (the smallest level among its open limits) and first limit there: its
        # charger's, then the smallest open level on the way up from its charger's circuit, per
        # component (top-down over the circuits; a tie keeps the deeper group, first in rank);
        # the session's own order (power, then conductor by conductor) breaks a tie within a
        # group. They depend on the session only through the number of phases it draws on (its
        # conductors are its charger's first k): computed per charger for k = 1, 2, 3.
        for L in range(c0, n_cells):
            slack[L] = NO_LIMIT
            load[L] = 0
            settled[L] = 0
        for g in range(top, nc - 1, -1):
            for q in range(4):
                L = 4 * g + q
                best[L] = level[L] if is_open[L] else NO_LIMIT
                best_at[L] = L
                if g < top and best[4 * parent[g] + q] < best[L]:
                    best[L] = best[4 * parent[g] + q]
                    best_at[L] = best_at[4 * parent[g] + q]
        # A limit is exact when each of its sessions is at the same value at its own m as at the
        # limit's level: no session with m < ceiling has max(m, minimum) below that level. The
        # smallest such bound per limit: the charger's two open ones and its circuit's (for
        # conductor q, the sessions with more than q phases), then bottom-up.
        for x in range(n_live):
            j = live[x]
            j4 = 4 * j
            c4 = 4 * parent[j]
            j1 = open_phase[j]
            wired = conductors[j]
            m = level[j4]
            f = j4
            # Of its charger's phase limits only its first conductor's is open (see above).
            lv = level[j1]
            f = j1 if lv < m else f
            m = _min(m, lv)
            b = best[c4]
            at = best_at[c4]
            f = at if b < m else f
            m = _min(m, b)
            for q in range(3):
                L = c4 + 1 + ((wired >> (2 * q)) & 3)
                b = best[L]
                at = best_at[L]
                better = (b < m) | ((b == m) & (at >> 2 < f >> 2))
                f = at if better else f
                m = b if better else m
                m_k[q, j] = m  # for the sessions on q + 1 phases
                f_k[q, j] = f if m != NO_LIMIT else -1
            m1 = m_k[0, j]
            m2 = m_k[1, j]
            m3 = m_k[2, j]
            e1 = NO_LIMIT
            e2 = NO_LIMIT
            e3 = NO_LIMIT
            for k in range(start[j], end[j]):
                kk = act_k[k]
                # Branch-free: the number of phases varies from session to session.
                m = m1 if kk == 1 else (m2 if kk == 2 else m3)
                e = _max(m, act_low[k]) if m < act_high[k] else NO_LIMIT
                e1 = _min(e1, e if kk == 1 else NO_LIMIT)
                e2 = _min(e2, e if kk == 2 else NO_LIMIT)
                e3 = _min(e3, e if kk == 3 else NO_LIMIT)
            e23 = _min(e2, e3)
            e_all = _min(e1, e23)
            slack[j4] = e_all
            slack[j1] = e_all
            slack[c4] = _min(slack[c4], e_all)
            for q in range(3):
                L = c4 + 1 + ((wired >> (2 * q)) & 3)
                slack[L] = _min(slack[L], e_all if q == 0 else (e23 if q == 1 else e3))
        for L in range(c0, n_cells - 4):  # not the station's
            if slack[L] != NO_LIMIT:
                up = 4 * parent[L >> 2] + (L & 3)
                slack[up] = _min(slack[up], slack[L])
        # Freeze each session whose first limit is exact (per charger and number of phases);
        # its limits' frozen load: the charger's two open ones and its circuit's, then
        # bottom-up.
        for x in range(n_live):
            j = live[x]
            j4 = 4 * j
            c4 = 4 * parent[j]
            j1 = open_phase[j]
            wired = conductors[j]
            m1 = m_k[0, j]
            m2 = m_k[1, j]
            m3 = m_k[2, j]
            f1 = f_k[0, j]
            f2 = f_k[1, j]
            f3 = f_k[2, j]
            d1 = (f1 >= 0) & (level[_max(f1, 0)] <= slack[_max(f1, 0)])
            d2 = (f2 >= 0) & (level[_max(f2, 0)] <= slack[_max(f2, 0)])
            d3 = (f3 >= 0) & (level[_max(f3, 0)] <= slack[_max(f3, 0)])
            load_p = 0
            load_0 = 0
            load_1 = 0
            load_2 = 0
            top_p = 0
            top_0 = 0
            top_1 = 0
            top_2 = 0
            for k in range(start[j], end[j]):
                i = act[k]
                kk = act_k[k]
                hi = act_high[k]
                # Branch-free as above: a session that stays adds 0 (its value is not read
                # while it moves).
                m = m1 if kk == 1 else (m2 if kk == 2 else m3)
                done = d1 if kk == 1 else (d2 if kk == 2 else d3)
                first[i] = f1 if kk == 1 else (f2 if kk == 2 else f3)
                frozen[i] = 1 if done else 0
                x_i = _clamp(m, act_low[k], hi)
                value[i] = x_i
                x_i = x_i if done else 0
                top_x = hi if done else 0
                w = (0x020306 >> (8 * kk - 8)) & 0xFF  # 6 // kk
                load_p += x_i
                top_p += top_x
                load_0 += w * x_i
                top_0 += w * top_x
                load_1 += w * x_i if kk > 1 else 0
                top_1 += w * top_x if kk > 1 else 0
                load_2 += w * x_i if kk > 2 else 0
                top_2 += w * top_x if kk > 2 else 0
            # Branch-free (whether any froze varies from charger to charger): a limit whose
            # settled ceilings are 0 (nothing frozen, or only ceilings of 0, at 0 since) adds 0
            # and keeps its dirty flag.
            fixed[j4] += load_p
            ceilings[j4] -= top_p
            dirty[j4] |= top_p != 0
            fixed[j1] += load_0
            ceilings[j1] -= top_0
            dirty[j1] |= top_0 != 0
            load[c4] += load_p
            settled[c4] += top_p
            for q in range(3):
                L = c4 + 1 + ((wired >> (2 * q)) & 3)
                load[L] += load_0 if q == 0 else (load_1 if q == 1 else load_2)
                settled[L] += top_0 if q == 0 else (top_1 if q == 1 else top_2)
        for L in range(c0, n_cells):
            if settled[L] == 0:
                continue
            if L < n_cells - 4:  # not the station's
                up = 4 * parent[L >> 2] + (L & 3)
                load[up] += load[L]
                settled[up] += settled[L]
            fixed[L] += load[L]
            ceilings[L] -= settled[L]
            dirty[L] = 1
        n_act, n_live = _compact(act, in_order[:6], n_act, frozen, new_at, start, end, live, n_live, nc, n_groups,
                                 False)

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
            g = first[i] >> 2
            if g == top:
                binding[i] = STATION
            elif g >= nc:
                binding[i] = CIRCUIT
                binding_circuit[i] = by_rank[g - nc]
            else:
                binding[i] = CHARGER
    battery_and_grid(station, ev_total)
    return OK
