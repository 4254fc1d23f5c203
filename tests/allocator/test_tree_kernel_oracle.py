"""The tree kernel against its earlier version (tests/allocator/frozen_tree_kernel.py, a frozen
copy): the same allocations, binding codes, binding circuits and battery/grid setpoints, bit for
bit, on thousands of small random trees and on large ones up to 1,024 sessions under 50 circuits.
"""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest

from allocator.arrays import StationArrays
from allocator.request import load_into, parse_request
from tests.allocator import frozen_tree_kernel as frozen
from tests.allocator.tree_checks import ROTATIONS, random_session, random_tree

SMALL_TREES = 3000
LARGE_TREES = 60


def large_tree(rnd: random.Random, sessions: int) -> dict[str, Any]:
    """Up to 50 circuits 1 to 4 levels deep, chargers of 2 connectors (every eighth DC), 1/2/3
    phase EVs, rotations, minimums, caps, priorities; fuses a fraction of what could be drawn
    below them, so circuit, phase and charger limits all bind (or not)."""
    circuits: list[dict[str, Any]] = []
    depth: dict[str, int] = {}
    for k in range(rnd.randint(1, 50)):
        parents = [c["id"] for c in circuits if depth[c["id"]] < 3]
        parent = rnd.choice(parents + [None] * 2) if parents else None
        c: dict[str, Any] = {"id": f"K{k}"}
        if parent is not None:
            c["parent"] = parent
        depth[c["id"]] = 0 if parent is None else depth[parent] + 1
        if rnd.random() < 0.3:
            c["baseCurrent"] = [round(rnd.uniform(0, 10), 1) for _ in range(3)]
        circuits.append(c)
    rnd.shuffle(circuits)
    parent_of = {c["id"]: c.get("parent") for c in circuits}
    draw = dict.fromkeys(parent_of, 0.0)
    chargers: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    j = 0
    while len(items) < sessions:
        ch: dict[str, Any] = {"id": f"CP{j}", "connectors": 2}
        if rnd.random() < 0.95:
            ch["circuit"] = rnd.choice(circuits)["id"]
        dc = rnd.random() < 0.125
        if dc:
            ch.update(dc=True, maxPower=rnd.choice([50.0, 150.0]))
        else:
            ch.update(maxPower=rnd.choice([11.0, 22.0]), phaseRotation=rnd.choice(ROTATIONS))
            if rnd.random() < 0.7:
                ch["maxCurrent"] = rnd.choice([16.0, 32.0])
            if rnd.random() < 0.1:
                ch["phases"] = 1
        chargers.append(ch)
        at = ch.get("circuit")
        while at is not None:
            draw[at] += ch["maxPower"] * 1000 / 3 / 230
            at = parent_of[at]
        for idx in (1, 2):
            if len(items) == sessions:
                break
            items.append(random_session(rnd, f"s{len(items)}", ch["id"], idx, phases=not dc,
                                        min_power_p=0.6))
        j += 1
    share = rnd.choice([0.2, 0.4, 0.6, 0.9, 2.0])
    for c in circuits:
        if rnd.random() < 0.9:
            c["maxCurrent"] = round(max(draw[c["id"]] * share * rnd.uniform(0.5, 1.5), 6.0), 1)
        if rnd.random() < 0.2:
            c["maxPower"] = round(max(draw[c["id"]] * 0.69 * share, 5.0), 2)
    demand = sum(ch["maxPower"] for ch in chargers)
    return {"stationId": "L", "gridCapacity": round(demand * rnd.choice([0.1, 0.3, 0.6, 10.0]), 2),
            "voltage": rnd.choice([230.0, 240.0]), "circuits": circuits, "chargers": chargers,
            "sessions": items}


def assert_same_as_frozen(request: dict[str, Any]) -> None:
    req = parse_request(request)
    n = len(req.sessions)
    arrays = StationArrays(len(req.chargers), n, len(req.circuits))
    load_into(req, arrays)
    arrays.tree = True  # both kernels, also on requests the kW kernel would take
    arrays.solve()
    got = (arrays.allocation[:n].copy(), arrays.binding[:n].copy(),
           arrays.binding_circuit[:n].copy(), arrays.station.copy())
    work = np.zeros(frozen.work_size(arrays.max_chargers, arrays.max_sessions, arrays.max_circuits,
                                     max(arrays.max_circuits - 1, 0)), dtype=np.int64)
    arrays.allocation[:] = math.nan
    arrays.binding[:] = -1
    status = frozen.solve_tree(
        arrays.station, arrays.n_chargers, arrays._charger_f, arrays.charger_i, arrays.n_circuits,
        arrays.circuit_f, arrays.circuit_parent, arrays.n_sessions, arrays._session_f,
        arrays._session_i, arrays.allocation, arrays.binding, work)
    assert status == frozen.OK
    assert got[0].tobytes() == arrays.allocation[:n].tobytes()
    assert got[1].tolist() == arrays.binding[:n].tolist()
    assert got[2].tolist() == work[:n].tolist()
    assert got[3].tobytes() == arrays.station.tobytes()


@pytest.mark.parametrize("block", range(6))
def test_small_random_trees_match_the_frozen_kernel(block: int) -> None:
    per_block = SMALL_TREES // 6
    for seed in range(block * per_block, (block + 1) * per_block):
        assert_same_as_frozen(random_tree(random.Random(seed), max_sessions=18))


@pytest.mark.parametrize("block", range(6))
def test_large_random_trees_match_the_frozen_kernel(block: int) -> None:
    per_block = LARGE_TREES // 6
    for seed in range(block * per_block, (block + 1) * per_block):
        rnd = random.Random(10_000 + seed)
        sessions = 1024 if seed % 3 == 0 else rnd.choice([8, 64, 256, 512, 1000])
        assert_same_as_frozen(large_tree(rnd, sessions))
