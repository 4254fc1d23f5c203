"""Where the tree kernel's time goes: copies of it cut short after each phase, timed side by side.

Each copy of allocator/tree_kernel.py returns right after one phase (the set-up's steps, the
first round's levels, exactness, freezing, each round's end); batches of calls alternate between
the copies so that a busy machine slows them alike. A phase's time is the difference between
its copy and the one before (medians and fastest batches; on a shared machine the fastest are
the steadier). The cut points are found by the lines they follow, so a rewrite of the kernel
that renames them needs this file updated (it stops with the line it did not find).

    python bench/tree_phases.py [--sessions 1024] [--alternations 61] [--setup]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
_ROOT = os.path.dirname(_HERE)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import numpy as np  # noqa: E402

from allocator.arrays import StationArrays  # noqa: E402
from allocator.request import load_into, parse_request  # noqa: E402
from bench.tree_side_by_side import _load  # noqa: E402  (a frozen copy loaded by its path)


def _cuts(src: list[str], setup: bool) -> dict[str, list[tuple[int, str]]]:
    """Copy name -> lines to insert (before line index), in the order the phases run."""
    def find(prefix: str, after: int = 0) -> int:
        for k in range(after, len(src)):
            if src[k].startswith(prefix):
                return k
        raise SystemExit(f"tree_phases: no line starting {prefix!r} in allocator/tree_kernel.py")

    first = find("    first_round = True")
    loop = find("    while True:", first)
    end = find("    ev_total = 0", loop)
    rnd = [(first, "    rnd = 0"), (loop + 1, "        rnd += 1")]
    cuts: dict[str, list[tuple[int, str]]] = {}
    if setup:
        sessions = find("    # Sessions: ceilings")
        cuts.update({
            "dispatch": [(find("    ms = session_f.shape[1] + 1"), "    return OK")],
            "validation": [(find("    # Circuit ranks"), "    return OK")],
            "capacities": [(sessions, "    return OK")],
            "kW conversions": [(find("    for g in range(n_groups):", sessions), "    return OK")],
            "session loop": [(find("    # Sessions laid out by group"), "    return OK")],
            "layout": [(find("    # Rule 2b"), "    return OK")],
            "rule 2b": [(find("    # Rule 3: progressive"), "    return OK")],
            "limits' state": [(find("    for x in range(n_live):", find("    # Rule 3: progressive")),
                               "    return OK")],
        })
    visit = find("        for x in range(n_visit + n_cells - c0):", loop)  # chargers' limits first
    cuts.update({
        "set-up": [(first, "    return OK")],
        "r1 chargers' levels": rnd + [(visit + 1, "            if rnd == 1 and x == n_visit: return OK")],
        "r1 circuits' levels": rnd + [(find("        if not any_open:", loop), "        if rnd == 1: return OK")],
        "r1 exactness": rnd + [(find("        # Freeze each", loop), "        if rnd == 1: return OK")],
        "r1 freezing": rnd + [(find("        n_act, n_live = _compact(", loop), "        if rnd == 1: return OK")],
        "r1 compaction": rnd + [(end - 1, "        if rnd == 1: return OK")],
        "round 2": rnd + [(end - 1, "        if rnd == 2: return OK")],
        "round 3": rnd + [(end - 1, "        if rnd == 3: return OK")],
        "the rest": [],
    })
    return cuts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=1024)
    ap.add_argument("--alternations", type=int, default=61)
    ap.add_argument("--setup", action="store_true", help="also cut the set-up step by step")
    args = ap.parse_args()
    with open(os.path.join(_ROOT, "allocator", "tree_kernel.py")) as f:
        src = f.read().splitlines()
    folder = tempfile.mkdtemp(prefix="tree-phases-")
    copies = {}
    for k, (name, inserts) in enumerate(_cuts(src, args.setup).items()):
        lines = list(src)
        for at, text in sorted(inserts, reverse=True):
            lines[at:at] = [text]
        path = os.path.join(folder, f"tree_phase_{k}.py")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        copies[name] = _load(f"tree_phase_{k}", path)
    bench = _load("bench_allocator", os.path.join(_HERE, "allocator.py"))
    n = args.sessions
    req = parse_request(bench.tree_station(n, 7, 6) if n > 8 else bench.tree_station(n, 2, 2))
    a = StationArrays(len(req.chargers), n, len(req.circuits))
    load_into(req, a)
    calls = {}
    for name, module in copies.items():
        work = np.zeros(module.work_size(a.max_chargers, a.max_sessions, a.max_circuits), dtype=np.int64)
        call_args = (a.station, a.n_chargers, a._charger_f, a.charger_i, a.n_circuits, a.circuit_f,
                     a.circuit_parent, a.n_sessions, a._session_f, a._session_i, a.allocation, a.binding,
                     work)
        module.solve_tree(*call_args)  # compile
        calls[name] = (module.solve_tree, call_args)
    reps = max(1, 20000 // max(n, 1))
    times: dict[str, list[float]] = {name: [] for name in calls}
    order = list(calls)
    for k in range(args.alternations):
        for name in order if k % 2 == 0 else order[::-1]:
            solve, call_args = calls[name]
            start = time.perf_counter()
            for _ in range(reps):
                solve(*call_args)
            times[name].append((time.perf_counter() - start) / reps * 1e6)
    print(f"{n} sessions, {args.alternations} alternations of {reps} calls: us up to the cut (median, fastest) "
          "and the phase's own (difference to the cut before)")
    before_median = before_fastest = 0.0
    for name in order:
        median, fastest = statistics.median(times[name]), min(times[name])
        print(f"  {name:>20} {median:8.2f} {fastest:8.2f}   phase {median - before_median:7.2f} "
              f"{fastest - before_fastest:7.2f}")
        before_median, before_fastest = median, fastest
    return 0


if __name__ == "__main__":
    sys.exit(main())
