"""The tree kernel side by side with earlier versions of it, in one process, alternating.

For the tree stations of bench/allocator.py (8 sessions under a 3-level tree, 64, 512 and 1024
under 50 circuits), times `allocator.tree_kernel.solve_tree` against the kernel as it was at a
git revision (`--against`, default 3a3f778: before the per-charger passes; read with `git show`,
so no copy of it is kept in the tree; needs a git checkout) and, with --oldest, the frozen oracle
of tests/allocator (the kernel before issue 13's speed-up).
Batches of calls alternate between the kernels (first one, then the other) so that a busy
machine slows them alike; it prints the median and the fastest batch of each, and checks that
the results are the same bit for bit.

    python bench/tree_side_by_side.py [--alternations 41] [--sizes 8,64,512,1024] [--oldest]
                                      [--against REV]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

# Run as a script, this file's folder comes first on sys.path and would shadow the `allocator`
# package: drop it before importing (as bench/allocator.py does).
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
_ROOT = os.path.dirname(_HERE)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import numpy as np  # noqa: E402

from allocator import tree_kernel  # noqa: E402
from allocator.arrays import StationArrays  # noqa: E402
from allocator.request import load_into, parse_request  # noqa: E402


def _load(name: str, path: str) -> ModuleType:
    """A frozen copy by its path, registered under its name (numba's cache imports it by name)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _at_revision(rev: str) -> ModuleType:
    """allocator/tree_kernel.py as it was at `rev`, loaded from a temporary file."""
    source = subprocess.run(["git", "show", f"{rev}:allocator/tree_kernel.py"], cwd=_ROOT,
                            capture_output=True, text=True, check=True).stdout
    name = f"tree_kernel_{rev.replace('-', '_').replace('~', '_').replace('^', '_')}"
    path = os.path.join(tempfile.mkdtemp(prefix="tree-kernel-"), f"{name}.py")
    with open(path, "w") as f:
        f.write(source)
    return _load(name, path)


def _tree_station(sessions: int) -> dict[str, Any]:
    bench = _load("bench_allocator", os.path.join(_HERE, "allocator.py"))
    boards, subs = (2, 2) if sessions <= 8 else (7, 6)
    station: dict[str, Any] = bench.tree_station(sessions, boards, subs)
    return station


def _caller(solve: Callable[..., int], a: StationArrays, work: np.ndarray) -> Callable[[], int]:
    args = (a.station, a.n_chargers, a._charger_f, a.charger_i, a.n_circuits, a.circuit_f,
            a.circuit_parent, a.n_sessions, a._session_f, a._session_i, a.allocation, a.binding, work)
    return lambda: solve(*args)


def _batch(call: Callable[[], int], reps: int) -> float:
    start = time.perf_counter()
    for _ in range(reps):
        call()
    return (time.perf_counter() - start) / reps * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alternations", type=int, default=41)
    ap.add_argument("--sizes", default="8,64,512,1024")
    ap.add_argument("--oldest", action="store_true", help="also the frozen oracle of tests/allocator")
    ap.add_argument("--against", default="3a3f778", help="the git revision to time against")
    args = ap.parse_args()
    before = _at_revision(args.against)
    oldest = (_load("frozen_tree_kernel_oracle", os.path.join(_ROOT, "tests", "allocator", "frozen_tree_kernel.py"))
              if args.oldest else None)
    print(f"{'sessions':>8} {'kernel':>10} {'median us':>10} {'fastest us':>11} {'vs now':>7}  same")
    for n in (int(x) for x in args.sizes.split(",")):
        req = parse_request(_tree_station(n))
        a = StationArrays(len(req.chargers), n, len(req.circuits))
        load_into(req, a)
        # each kernel its own scratch, sized as it sizes it (its first cells: binding_circuit)
        works = {"now": a._work,
                 args.against: np.zeros(before.work_size(a.max_chargers, a.max_sessions, a.max_circuits),
                                     dtype=np.int64)}
        if oldest is not None:
            works["oracle"] = np.zeros(oldest.work_size(a.max_chargers, a.max_sessions, a.max_circuits,
                                                        max(a.max_circuits - 1, 0)), dtype=np.int64)
        solvers = {"now": tree_kernel.solve_tree, args.against: before.solve_tree}
        if oldest is not None:
            solvers["oracle"] = oldest.solve_tree
        kernels = {name: _caller(solvers[name], a, works[name]) for name in works}
        results = {}
        for name, call in kernels.items():
            assert call() == 0
            results[name] = (a.allocation[:n].tobytes(), a.binding[:n].tobytes(),
                             works[name][:n].tobytes(), a.station.tobytes())
        once = _batch(kernels["now"], 3)
        reps = max(1, int(5000 / once))
        times: dict[str, list[float]] = {name: [] for name in kernels}
        order = list(kernels)
        for k in range(args.alternations):
            for name in order if k % 2 == 0 else order[::-1]:
                times[name].append(_batch(kernels[name], reps))
        now_median = statistics.median(times["now"])
        now_fastest = min(times["now"])
        for name in kernels:
            median, fastest = statistics.median(times[name]), min(times[name])
            same = results[name] == results["now"]
            print(f"{n:>8} {name:>10} {median:>10.2f} {fastest:>11.2f} "
                  f"{median / now_median:>6.2f}x  {'yes' if same else 'NO'}"
                  + ("" if name == "now" else f" (fastest {fastest / now_fastest:.2f}x)"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
