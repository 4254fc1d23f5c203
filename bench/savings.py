"""Savings benchmark: the reference day under the planner (re-planning every 15 and every
5 minutes) against the uncontrolled counterfactual and the perfect-foresight optimum.

    .venv/bin/python bench/savings.py [--scenario FILE] [--json]

Targets (issue 7): savings >= 40 % with at least as much energy delivered; cost within 3 %
of the optimum; planner solve time median <= 1 s. Prints what it measured, whatever it is.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.replay import load_day, optimum, refill_price, simulate  # noqa: E402

DEFAULT = Path("/work/shared/scenarios/reference-day.json")


def measure(path: Path) -> dict:
    day = load_day(path)
    base = simulate(day, "uncontrolled")
    best = optimum(day)
    rows = []
    for replan in (15.0, 5.0):
        r = simulate(day, "planner", replan_minutes=replan)
        cost = r.ledger.cost
        if day.battery is not None and r.battery_end_energy is not None:
            short = day.battery.soc_start * day.battery.capacity - r.battery_end_energy
            cost += max(0.0, short) * refill_price(day)
        solves = r.plan_solve_seconds
        rows.append({
            "replanMinutes": replan,
            "cost": round(cost, 2),
            "savingsPct": round(100 * (base.ledger.cost - cost) / base.ledger.cost, 2),
            "overOptimumPct": round(100 * (cost - best["cost"]) / best["cost"], 2),
            "peakImport": round(r.ledger.peak_kw, 1),
            "energyDelivered": round(r.energy_delivered, 1),
            "unmetEnergy": round(r.unmet_energy, 1),
            "plans": len(solves),
            "solveMedianS": round(statistics.median(solves), 4) if solves else 0.0,
            "solveMaxS": round(max(solves), 4) if solves else 0.0,
            "replayWallS": round(r.wall_seconds, 2),
        })
    return {
        "scenario": str(path),
        "baselineCost": round(base.ledger.cost, 2),
        "baselineDelivered": round(base.energy_delivered, 1),
        "optimumCost": round(best["cost"], 2),
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
          f"{res['optimumCost']:.2f} EUR (one LP, {res['optimumSolveS'] * 1000:.0f} ms)")
    head = ("replan", "cost EUR", "savings %", "vs opt %", "peak kW", "deliv kWh", "unmet",
            "plans", "solve med s", "solve max s", "wall s")
    print(" | ".join(f"{h:>11}" for h in head))
    for r in res["planner"]:
        vals = (f"{r['replanMinutes']:g} min", r["cost"], r["savingsPct"], r["overOptimumPct"],
                r["peakImport"], r["energyDelivered"], r["unmetEnergy"], r["plans"],
                r["solveMedianS"], r["solveMaxS"], r["replayWallS"])
        print(" | ".join(f"{v:>11}" for v in vals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
