"""Allocator benchmark: the numba kernel, the public allocate() and the plain-Python reference.

For 8, 64, 512, 1024 and 4096 sessions (4 connectors per charger, mixed DC/AC vehicles, some
power caps and minimums, battery and PV; the grid is short so charger and station limits
bind): median microseconds per call of
  kernel     StationArrays.solve() on pre-filled arrays (what the control loop pays per cycle,
             numba dispatch included),
  +setpoint  the same with a plan's battery setpoint (rule 5's follow-up in Python, battery.py),
  api        allocate(request dict): validation, conversion to arrays, solve, result dict,
  reference  allocate_reference(request dict), the plain-Python specification,
and reference/kernel. Also the first call's time in a fresh process (compile or cache load)
with an empty NUMBA_CACHE_DIR (cold) and with the cache it left behind (cached).
Targets: kernel <= 2 us at 8 sessions, <= 20 us at 1024, >= 50x the reference at 1024.

Tree table (the electrical tree, `tree_kernel.py`): 8 sessions under a 3-level tree (main
board, 2 boards, 4 sub-boards) and 1024 sessions under 50 circuits (main, 7 boards, 42
sub-boards); AC chargers of 22 kW / 32 A with rotated phases, every eighth a 150 kW DC charger;
EVs 1-, 2- and 3-phase with a 6 A minimum; fuses sized to 60 % of what the chargers below could
draw, so circuit, charger and phase limits all bind. Columns: the tree kernel's solve(), the
reference, and reference/kernel. Targets: <= 5 us at 8 sessions, <= 60 us at 1024.

    python bench/allocator.py [--json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

# Run as a script, this file's folder comes first on sys.path and this file would shadow the
# `allocator` package it measures: drop the folder before importing.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

from allocator import allocate, allocate_reference  # noqa: E402
from allocator.arrays import StationArrays  # noqa: E402
from allocator.request import load_into, parse_request  # noqa: E402

SIZES = (8, 64, 512, 1024, 4096)
CONNECTORS = 4
TREES = ((8, 2, 2), (1024, 7, 6))  # sessions, boards under the main board, sub-boards per board


def station(sessions: int, seed: int = 1) -> dict[str, Any]:
    rnd = random.Random(seed)
    kinds = [(350.0, (50.0, 150.0, 250.0, 350.0)), (150.0, (50.0, 100.0, 150.0)),
             (50.0, (40.0, 50.0)), (22.0, (7.4, 11.0, 22.0))]
    chargers: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    demand = 0.0  # what the chargers could draw at most: the grid gets 60 % of it
    for j in range(-(-sessions // CONNECTORS)):
        max_power, vehicles = kinds[j % len(kinds)]
        chargers.append({"id": f"CP{j}", "maxPower": max_power, "connectors": CONNECTORS})
        for idx in range(1, CONNECTORS + 1):
            if len(items) == sessions:
                break
            vmax = rnd.choice(vehicles)
            session: dict[str, Any] = {"sessionId": f"s{len(items)}",
                                       "connectorId": {"chargerId": f"CP{j}", "idx": idx},
                                       "vehicleMaxPower": vmax, "priority": rnd.choice((0, 0, 1))}
            if rnd.random() < 0.2:
                session["powerCap"] = round(vmax * rnd.uniform(0.3, 0.9), 2)
            if max_power == 22.0:
                session["minPower"] = 4.1
            items.append(session)
        ceilings = [min(s["vehicleMaxPower"], s.get("powerCap", 1e9)) for s in items[-CONNECTORS:]
                    if s["connectorId"]["chargerId"] == f"CP{j}"]
        demand += min(max_power, sum(ceilings))
    return {"stationId": f"bench-{sessions}", "gridCapacity": round(demand * 0.6, 2),
            "baseLoad": 20.0, "pvPower": 30.0,
            "battery": {"maxDischargePower": 50.0, "maxChargePower": 50.0, "soc": 55.0, "minSoc": 10.0},
            "chargers": chargers, "sessions": items}


def tree_station(sessions: int, boards: int, subs_per_board: int, seed: int = 1) -> dict[str, Any]:
    """A station under main board -> boards -> sub-boards (1 + boards * (1 + subs) circuits)."""
    rnd = random.Random(seed)
    circuits: list[dict[str, Any]] = [{"id": "main", "baseCurrent": [12.0, 4.0, 8.0]}]
    leaves = []
    for b in range(boards):
        circuits.append({"id": f"B{b}", "parent": "main", "baseCurrent": [3.0, 0.0, 1.0]})
        for k in range(subs_per_board):
            circuits.append({"id": f"B{b}S{k}", "parent": f"B{b}"})
            leaves.append(f"B{b}S{k}")
    parent = {c["id"]: c.get("parent") for c in circuits}
    draw = dict.fromkeys(parent, 0.0)  # A per phase the chargers below could draw
    rotations = ("L1L2L3", "L2L3L1", "L3L1L2")
    chargers: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    j = 0
    while len(items) < sessions:
        leaf = leaves[j % len(leaves)]
        charger: dict[str, Any] = {"id": f"CP{j}", "connectors": 2, "circuit": leaf}
        dc = j % 8 == 7
        if dc:
            charger.update(dc=True, maxPower=150.0)
        else:
            charger.update(maxPower=22.0, maxCurrent=32.0, phaseRotation=rotations[j % 3])
        chargers.append(charger)
        at: str | None = leaf
        while at is not None:
            draw[at] += 150000 / 3 / 230 if dc else 64.0
            at = parent[at]
        for idx in (1, 2):
            if len(items) == sessions:
                break
            s: dict[str, Any] = {"sessionId": f"s{len(items)}", "minPower": 1.38,
                                 "connectorId": {"chargerId": charger["id"], "idx": idx}}
            if dc:
                s["vehicleMaxPower"] = rnd.choice((50.0, 100.0, 150.0))
            else:
                s["phases"] = rnd.choice((1, 1, 2, 3, 3))
                s["vehicleMaxPower"] = rnd.choice((11.0, 22.0)) if s["phases"] == 3 else 7.4
            items.append(s)
        j += 1
    for c in circuits:
        c["maxCurrent"] = round(max(draw[c["id"]] * 0.6, 16.0))
    return {"stationId": f"tree-{sessions}", "gridCapacity": 10000.0, "voltage": 230.0,
            "circuits": circuits, "chargers": chargers, "sessions": items}


def median_us(call: Callable[[], object], budget_s: float) -> float:
    """Median over batches of the mean time per call, in microseconds."""
    call()
    start = time.perf_counter()
    call()
    once = max(time.perf_counter() - start, 1e-7)
    per_batch = max(1, int(budget_s / 9 / once))
    batches = []
    for _ in range(9):
        start = time.perf_counter()
        for _ in range(per_batch):
            call()
        batches.append((time.perf_counter() - start) / per_batch)
    return statistics.median(batches) * 1e6


def first_call_ms(cache_dir: str) -> float:
    """A fresh interpreter's first solve() (compile, or load from cache_dir), in ms."""
    code = ("import time; from allocator.arrays import StationArrays; a = StationArrays(1, 1); "
            "t = time.perf_counter(); a.solve(); print((time.perf_counter() - t) * 1e3)")
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, check=True, timeout=300)
    return float(done.stdout.strip())


def measure(quick: bool) -> dict[str, Any]:
    budget = 0.3 if quick else 1.5
    rows = []
    for n in SIZES:
        request = station(n)
        arrays = StationArrays(len(request["chargers"]), n)
        load_into(parse_request(request), arrays)
        kernel_us = median_us(arrays.solve, budget)
        arrays.battery_setpoint = -20.0  # a plan charging the battery (allocator/battery.py)
        setpoint_us = median_us(arrays.solve, budget)
        arrays.battery_setpoint = None
        api_us = median_us(lambda r=request: allocate(r), budget)
        reference_us = median_us(lambda r=request: allocate_reference(r), budget)
        rows.append({"sessions": n, "kernel_us": round(kernel_us, 2),
                     "setpoint_us": round(setpoint_us, 2), "api_us": round(api_us, 1),
                     "reference_us": round(reference_us, 1),
                     "ratio": round(reference_us / kernel_us, 1)})
    trees = []
    for n, boards, subs in TREES:
        request = tree_station(n, boards, subs)
        req = parse_request(request)
        arrays = StationArrays(len(req.chargers), n, len(req.circuits))
        load_into(req, arrays)
        kernel_us = median_us(arrays.solve, budget)
        reference_us = median_us(lambda r=request: allocate_reference(r), budget)
        trees.append({"sessions": n, "circuits": len(req.circuits), "chargers": len(req.chargers),
                      "kernel_us": round(kernel_us, 2), "reference_us": round(reference_us, 1),
                      "ratio": round(reference_us / kernel_us, 1)})
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache_dir:
        cold = first_call_ms(cache_dir)
        cached = statistics.median(first_call_ms(cache_dir) for _ in range(3))
    return {"rows": rows, "trees": trees, "cold_start_ms": round(cold, 1), "cached_start_ms": round(cached, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    ap.add_argument("--quick", action="store_true", help="shorter timing runs (noisier)")
    args = ap.parse_args()
    out = measure(args.quick)
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{'sessions':>8} {'kernel us':>10} {'+setpoint':>10} {'api us':>10} {'reference us':>13} "
          f"{'ratio':>8}")
    for r in out["rows"]:
        print(f"{r['sessions']:>8} {r['kernel_us']:>10.2f} {r['setpoint_us']:>10.2f} {r['api_us']:>10.1f} "
              f"{r['reference_us']:>13.1f} {r['ratio']:>7.0f}x")
    print()
    print(f"{'tree':>8} {'circuits':>9} {'kernel us':>10} {'reference us':>13} {'ratio':>8}")
    for r in out["trees"]:
        print(f"{r['sessions']:>8} {r['circuits']:>9} {r['kernel_us']:>10.2f} "
              f"{r['reference_us']:>13.1f} {r['ratio']:>7.0f}x")
    print(f"first call: {out['cold_start_ms']} ms with an empty numba cache, "
          f"{out['cached_start_ms']} ms with a warm one")
    return 0


if __name__ == "__main__":
    sys.exit(main())
