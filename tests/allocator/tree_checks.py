"""Independent checks of a tree allocation: random trees, every limit recomputed from the result,
and the lexicographic max-min fair vector solved as a sequence of LPs (HiGHS).

Nothing here uses the allocator's own limit construction: circuits, phases and rotations are
re-derived from the request dict, so a mistake there cannot hide itself.
"""

from __future__ import annotations

import random
from typing import Any

import highspy
import numpy as np

ROTATIONS = ["L1L2L3", "L1L3L2", "L2L1L3", "L2L3L1", "L3L1L2", "L3L2L1"]
LIMIT_TOL = 1e-6  # A or kW: no limit may be exceeded by more than this


def random_tree(rnd: random.Random, max_sessions: int = 12) -> dict[str, Any]:
    """A station with up to 4 levels of circuits, rotations, 1/3-phase chargers, DC chargers,
    1/2/3-phase EVs, base loads, caps, minimums and priorities."""
    circuits: list[dict[str, Any]] = []
    depth: dict[str, int] = {}
    for k in range(rnd.randint(0, 7)):
        parents = [c["id"] for c in circuits if depth[c["id"]] < 3]
        parent = rnd.choice(parents + [None]) if parents else None
        c: dict[str, Any] = {"id": f"K{k}"}
        if parent is not None:
            c["parent"] = parent
        depth[c["id"]] = 0 if parent is None else depth[parent] + 1
        if rnd.random() < 0.8:
            c["maxCurrent"] = rnd.choice([16, 25, 32, 40, 63, 80, 125, rnd.uniform(6, 100)])
        if rnd.random() < 0.4:
            c["maxPower"] = round(rnd.uniform(5, 150), 2)
        if rnd.random() < 0.4:
            c["baseCurrent"] = [round(rnd.uniform(0, 20), 1) for _ in range(3)]
        if rnd.random() < 0.3:
            c["basePower"] = round(rnd.uniform(0, 10), 2)
        circuits.append(c)
    rnd.shuffle(circuits)  # listing order is not tree order
    chargers = []
    for j in range(rnd.randint(1, 6)):
        ch: dict[str, Any] = {"id": f"CP{j}", "connectors": rnd.randint(1, 3)}
        if rnd.random() < 0.2:
            ch.update(dc=True, maxPower=rnd.choice([50.0, 150.0, 350.0]))
        else:
            ch["maxPower"] = rnd.choice([3.7, 7.4, 11.0, 22.0, 44.0])
            if rnd.random() < 0.3:
                ch["phases"] = rnd.choice([1, 3])
            if rnd.random() < 0.6:
                ch["phaseRotation"] = rnd.choice(ROTATIONS)
            if rnd.random() < 0.6:
                ch["maxCurrent"] = rnd.choice([16, 32, 63, rnd.uniform(6, 64)])
        if circuits and rnd.random() < 0.85:
            ch["circuit"] = rnd.choice(circuits)["id"]
        chargers.append(ch)
    connectors = [(c["id"], i) for c in chargers for i in range(1, c["connectors"] + 1)]
    rnd.shuffle(connectors)
    sessions = []
    for n, (cid, idx) in enumerate(connectors[:rnd.randint(0, max_sessions)]):
        sessions.append(random_session(rnd, f"s{n}", cid, idx))
    request: dict[str, Any] = {"stationId": "T", "gridCapacity": round(rnd.uniform(0, 200), 2),
                               "voltage": rnd.choice([230.0, 230.0, 220.0, 240.0, 127.0]),
                               "circuits": circuits, "chargers": chargers, "sessions": sessions}
    if rnd.random() < 0.3:
        request["baseLoad"] = round(rnd.uniform(0, 30), 2)
    return request


def random_session(rnd: random.Random, sid: str, cid: str, idx: int, *, phases: bool = True,
                   min_power_p: float = 0.4) -> dict[str, Any]:
    """A session with a random vehicle, phase count (where `phases`), cap, minimum and
    priority."""
    s: dict[str, Any] = {"sessionId": sid, "connectorId": {"chargerId": cid, "idx": idx},
                         "vehicleMaxPower": rnd.choice([3.7, 7.4, 11.0, 22.0, 50.0, 150.0,
                                                        round(rnd.uniform(0, 60), 2)])}
    if phases and rnd.random() < 0.6:
        s["phases"] = rnd.choice([1, 1, 2, 3])
    if rnd.random() < 0.2:
        s["powerCap"] = round(rnd.uniform(0, 30), 2)
    if rnd.random() < min_power_p:
        s["minPower"] = rnd.choice([1.38, 4.14, round(rnd.uniform(0, 8), 2)])
    if rnd.random() < 0.3:
        s["priority"] = rnd.choice([0, 1, 2])
    return s


def coefficients(request: dict[str, Any]) -> tuple[list[list[float]], list[float], list[str]]:
    """Every limit as (kW coefficients per session, right-hand side, name): x is in kW."""
    volts = request.get("voltage", 230.0)
    chargers = {c["id"]: c for c in request["chargers"]}
    circuits = {c["id"]: c for c in request.get("circuits") or []}
    sessions = request["sessions"]

    def grid_phases(s: dict[str, Any]) -> list[int]:
        ch = chargers[s["connectorId"]["chargerId"]]
        if ch.get("dc"):
            return [0, 1, 2]
        k = min(s.get("phases") or ch.get("phases", 3), ch.get("phases", 3))
        rotation = ch.get("phaseRotation", "L1L2L3")
        return [int(rotation[2 * q + 1]) - 1 for q in range(k)]

    def amps_per_kw(s: dict[str, Any], phase: int) -> float:
        phases = grid_phases(s)
        return 1000.0 / (len(phases) * volts) if phase in phases else 0.0

    def below(s: dict[str, Any], circuit: str) -> bool:
        at = chargers[s["connectorId"]["chargerId"]].get("circuit")
        while at is not None:
            if at == circuit:
                return True
            at = circuits[at].get("parent")
        return False

    rows: list[list[float]] = []
    rhs: list[float] = []
    names: list[str] = []
    for cid, ch in chargers.items():
        on = [s["connectorId"]["chargerId"] == cid for s in sessions]
        rows.append([1.0 if o else 0.0 for o in on])
        rhs.append(ch["maxPower"])
        names.append(f"charger {cid} kW")
        if ch.get("maxCurrent") is not None:
            for p in range(3):
                rows.append([amps_per_kw(s, p) if o else 0.0 for s, o in zip(sessions, on, strict=False)])
                rhs.append(ch["maxCurrent"])
                names.append(f"charger {cid} L{p + 1} A")
    for cid, c in circuits.items():
        under = [below(s, cid) for s in sessions]
        if c.get("maxPower") is not None:
            rows.append([1.0 if u else 0.0 for u in under])
            rhs.append(c["maxPower"] - c.get("basePower", 0.0))
            names.append(f"circuit {cid} kW")
        if c.get("maxCurrent") is not None:
            base = c.get("baseCurrent") or [0.0, 0.0, 0.0]
            for p in range(3):
                rows.append([amps_per_kw(s, p) if u else 0.0 for s, u in zip(sessions, under, strict=False)])
                rhs.append(c["maxCurrent"] - base[p])
                names.append(f"circuit {cid} L{p + 1} A")
    battery = request.get("battery")
    discharge = battery["maxDischargePower"] if battery and battery["soc"] > battery["minSoc"] else 0.0
    rows.append([1.0] * len(sessions))
    rhs.append(request["gridCapacity"] - request.get("baseLoad", 0.0) + request.get("pvPower", 0.0)
               + discharge)
    names.append("station kW")
    return rows, rhs, names


def ceiling(s: dict[str, Any]) -> float:
    return min(s["vehicleMaxPower"], s.get("powerCap", float("inf")))


def violations(request: dict[str, Any], result: dict[str, Any]) -> list[str]:
    """Every limit the result exceeds by more than LIMIT_TOL (A or kW), and every session
    outside its own bounds; [] when the result is safe."""
    x = [result["allocations"][s["sessionId"]] for s in request["sessions"]]
    rows, rhs, names = coefficients(request)
    out = [f"{name}: {sum(a * v for a, v in zip(row, x, strict=False)):.6f} > {limit:.6f}"
           for row, limit, name in zip(rows, rhs, names, strict=False)
           if sum(a * v for a, v in zip(row, x, strict=False)) > max(limit, 0.0) + LIMIT_TOL]
    for s, v in zip(request["sessions"], x, strict=False):
        if v < 0 or v > ceiling(s) + LIMIT_TOL or 0 < v < s.get("minPower", 0.0) - LIMIT_TOL:
            out.append(f"{s['sessionId']}: {v} outside 0 / [{s.get('minPower', 0)}, {ceiling(s)}]")
    return out


def _lp(n: int, rows: list[list[float]], rhs: list[float], lower: list[float], upper: list[float],
        objective: list[float]) -> tuple[float, list[float]] | None:
    """max objective . (x, t) over x (n) and t, rows n + 1 wide; None when infeasible."""
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    inf = highspy.kHighsInf
    lp = highspy.HighsLp()
    lp.num_col_ = n + 1
    lp.col_cost_ = np.array([-c for c in objective])
    lp.col_lower_ = np.array(lower)
    lp.col_upper_ = np.array(upper)
    starts: list[int] = [0]
    index: list[int] = []
    value: list[float] = []
    dense = [list(r) for r in rows] or [[0.0] * (n + 1)]
    rhs = list(rhs) or [0.0]
    row_lower = [-inf] * len(rhs)
    row_upper = list(rhs)
    # column-wise sparse matrix
    for col in range(n + 1):
        for k, r in enumerate(dense):
            if r[col] != 0.0:
                index.append(k)
                value.append(r[col])
        starts.append(len(index))
    lp.num_row_ = len(dense)
    lp.row_lower_ = np.array(row_lower)
    lp.row_upper_ = np.array(row_upper)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.array(starts, dtype=np.int32)
    lp.a_matrix_.index_ = np.array(index, dtype=np.int32)
    lp.a_matrix_.value_ = np.array(value)
    h.passModel(lp)
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    sol = list(h.getSolution().col_value)
    return -h.getInfo().objective_function_value, sol


def max_min_fair(request: dict[str, Any], paused: set[str]) -> list[float]:
    """The lexicographic max-min fair vector (kW) by sequential LPs: raise a common level t
    (x_i >= max(t, minPower) for every unfrozen session), then freeze each session that cannot
    exceed max(t, its minimum) while the others keep theirs; repeat. Paused sessions are 0."""
    sessions = request["sessions"]
    n = len(sessions)
    rows, rhs, _ = coefficients(request)
    rhs = [max(b, 0.0) for b in rhs]
    lo = [0.0 if s["sessionId"] in paused or ceiling(s) == 0 else s.get("minPower", 0.0) for s in sessions]
    hi = [0.0 if s["sessionId"] in paused else ceiling(s) for s in sessions]
    fixed: dict[int, float] = {i: 0.0 for i in range(n) if hi[i] == 0}
    big = 1e6
    while len(fixed) < n:
        free = [i for i in range(n) if i not in fixed]
        # x_i - t >= 0 for free sessions, written as t - x_i <= 0
        level_rows = [[(-1.0 if k == i else 0.0) for k in range(n)] + [1.0] for i in free]
        all_rows = [r + [0.0] for r in rows] + level_rows
        lower = [fixed.get(i, lo[i]) for i in range(n)] + [0.0]
        upper = [fixed.get(i, hi[i]) for i in range(n)] + [big]
        solved = _lp(n, all_rows, rhs + [0.0] * len(free), lower, upper, [0.0] * n + [1.0])
        assert solved is not None, "the minimums of the active sessions do not fit"
        t = solved[0]
        frozen_now = []
        for i in free:
            target = max(t, lo[i])
            lower_i = [fixed.get(k, max(lo[k], t) if k != i else target) for k in range(n)] + [0.0]
            upper_i = [fixed.get(k, hi[k]) for k in range(n)] + [big]
            obj = [1.0 if k == i else 0.0 for k in range(n)] + [0.0]
            best = _lp(n, [r + [0.0] for r in rows], rhs, lower_i, upper_i, obj)
            if best is None or best[0] <= target + 1e-7:
                frozen_now.append((i, min(target, hi[i])))
        assert frozen_now, "progressive filling made no progress"
        for i, v in frozen_now:
            fixed[i] = v
    return [fixed[i] for i in range(n)]
