"""Savings benchmark: the reference day under the rolling planner, in variants side by side,
against the uncontrolled counterfactual and the perfect-foresight optimum.

    .venv/bin/python bench/savings.py [--scenario FILE] [--json]

Variants (agent.energy.replay.Tuning; none looks at the day's EV list before an arrival):
  no reserve      the battery free for price arbitrage (the planner before the reserve)
  default         reserve = the battery's whole window, valued at the default prior
                  (allocator.planner.RESERVE_RATE, one needy surprise every two days)
  reserve 1 h     reserve = one hour of full discharge power above the minimum SoC
  rate x0.5/x2    the default reserve with half / double the prior
  default, 5 min  the default, re-planning every 5 minutes instead of 15

Targets (issue 7): savings >= 40 % with at least as much energy delivered; cost within 3 %
of the optimum; planner solve time median <= 1 s. Prints what it measured, whatever it is.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

# Run as a script, bench/ comes first on sys.path and bench/allocator.py would shadow the
# `allocator` package: drop that folder (bench/run_all.py also runs each with `python -P`).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.energy.replay import Day, Tuning, load_day, optimum, result_cost, simulate  # noqa: E402
from agent.energy.savings import savings_pct  # noqa: E402
from allocator.planner import RESERVE_RATE  # noqa: E402

# The shared reference day, beside this checkout (../shared, as CI and the demo find it).
DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "scenarios" / "reference-day.json"

VARIANTS: list[tuple[str, Tuning, float]] = [
    ("no reserve", Tuning(reserve_hours=0.0), 15.0),
    ("default", Tuning(), 15.0),
    ("reserve 1 h", Tuning(reserve_hours=1.0), 15.0),
    ("rate x0.5", Tuning(reserve_rate=RESERVE_RATE / 2), 15.0),
    ("rate x2", Tuning(reserve_rate=RESERVE_RATE * 2), 15.0),
    ("default, 5 min", Tuning(), 5.0),
]


def _row(day: Day, name: str, tuning: Tuning, replan: float, base_cost: float,
         best_cost: float) -> dict:
    r = simulate(day, "planner", replan_minutes=replan, tuning=tuning)
    cost = result_cost(day, r)
    solves = r.plan_solve_seconds
    return {
        "variant": name,
        "replanMinutes": replan,
        "cost": round(cost, 2),
        "savingsPct": round(savings_pct(cost, base_cost), 2),
        "overOptimumPct": round(100 * (cost - best_cost) / best_cost, 2),
        "peakImport": round(r.ledger.peak_kw, 1),
        "energyDelivered": round(r.energy_delivered, 1),
        "unmetEnergy": round(r.unmet_energy, 1),
        "plans": len(solves),
        "solveMedianS": round(statistics.median(solves), 4) if solves else 0.0,
        "solveMaxS": round(max(solves), 4) if solves else 0.0,
        "replayWallS": round(r.wall_seconds, 2),
    }


def measure(path: Path) -> dict:
    day = load_day(path)
    base = simulate(day, "uncontrolled")
    best = optimum(day)
    rows = [_row(day, name, tuning, replan, base.ledger.cost, best["cost"])
            for name, tuning, replan in VARIANTS]
    return {
        "scenario": str(path),
        "baselineCost": round(base.ledger.cost, 2),
        "baselineDelivered": round(base.energy_delivered, 1),
        "optimumCost": round(best["cost"], 2),
        "optimumPeak": round(best["peak"], 1),
        "optimumDelivered": round(sum(ev.energy_needed for ev in day.evs) - best["unmet"], 1),
        "optimumSolveS": round(best["solveSeconds"], 4),
        "planner": rows,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", type=Path, default=DEFAULT)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    res = measure(args.scenario)
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"scenario {res['scenario']}")
    print(f"uncontrolled cost {res['baselineCost']:.2f} EUR, delivered "
          f"{res['baselineDelivered']:.1f} kWh; perfect-foresight optimum "
          f"{res['optimumCost']:.2f} EUR, peak {res['optimumPeak']:.1f} kW, delivered "
          f"{res['optimumDelivered']:.1f} kWh (one LP, {res['optimumSolveS'] * 1000:.0f} ms)")
    head = ("variant", "replan", "cost EUR", "savings %", "vs opt %", "peak kW", "deliv kWh",
            "unmet", "plans", "solve med s", "solve max s", "wall s")
    print(" | ".join(f"{h:>14}" for h in head))
    for r in res["planner"]:
        vals = (r["variant"], f"{r['replanMinutes']:g} min", r["cost"], r["savingsPct"],
                r["overOptimumPct"], r["peakImport"], r["energyDelivered"], r["unmetEnergy"],
                r["plans"], r["solveMedianS"], r["solveMaxS"], r["replayWallS"])
        print(" | ".join(f"{v:>14}" for v in vals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
