"""Savings benchmark: the rolling planner on many generated station days it has never seen,
and on the reference day, against the uncontrolled counterfactual and the perfect-foresight
optimum.

    .venv/bin/python bench/savings.py [--days 20] [--scenario FILE] [--json]
        [--peak-floor FACTOR [--floor-same-day-type]] [--scenarios K [--scenario-days]]
        [--day-offset 1|2]

Generated days (hardware_sim.station_days): sites 1..5, four days each, every day with the
seven days before it as history (the arrival forecast learns from their sessions, never
from the day itself). Per day: uncontrolled cost, ours, the optimum, savings, gap to the
optimum, peak, unmet energy, battery start/end, failed plans; then median and worst.
`--day-offset` 1 or 2 measures the days after the bench's own (never measured by default:
a held-out check of anything tuned on the bench's days); `--peak-floor` plans them with a
peak floor (`Tuning.peak_floor`, off by default; docs/planner.md), `--scenarios` with
scenarios from history (`Tuning.scenarios`, off by default). Each day's row carries its
plans' build + solve times (`solveS`), the summary their median and worst.

Targets (issue 16): savings >= 40 % every day with as much energy delivered as
uncontrolled; median gap <= 3 %, worst <= 8 %; battery ending at or above its start;
0 failed plans. Prints what it measured, whatever it is.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path

# Run as a script, bench/ comes first on sys.path and bench/allocator.py would shadow the
# `allocator` package: drop that folder (bench/run_all.py also runs each with `python -P`).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hardware_sim.station_days import with_history  # noqa: E402

from agent.energy.replay import (  # noqa: E402
    Day,
    Tuning,
    load_day,
    optimum,
    parse_day,
    result_cost,
    simulate,
)
from agent.energy.savings import savings_pct  # noqa: E402

# The reference day, shipped with the simulator (as the demo and the tests use it).
DEFAULT = ROOT / "hardware-sim" / "scenarios" / "reference-day.json"

# The reference day has no history, so the planner runs there as a new station does: the
# battery reserve without expected sessions (docs/planner.md).
VARIANTS: list[tuple[str, Tuning, float]] = [("default", Tuning(), 15.0)]
SITES = (1, 2, 3, 4, 5)
HISTORY = 7


def generated_day(i: int, offset: int = 0) -> tuple[Day, list[Day]]:
    """The i-th bench day (site, then day number) and its seven days of history; `offset`
    1 or 2 moves every day by that many (days the bench never measures: a held-out check
    of anything tuned on the bench's own days)."""
    seed = SITES[i % len(SITES)]
    k = HISTORY + offset + 3 * (i // len(SITES))
    doc, hist = with_history(seed, k, HISTORY)
    return parse_day(doc), [parse_day(h) for h in hist]


def day_row(day: Day, history: list[Day], tuning: Tuning | None = None) -> dict:
    """One generated day measured: uncontrolled, ours (with history), the optimum."""
    base = simulate(day, "uncontrolled")
    ours = simulate(day, "planner", tuning=tuning, history=history)
    best = optimum(day)
    cost = result_cost(day, ours)
    b = day.battery
    row = {
        "day": day.station_id + "/" + day.start.date().isoformat(),
        "evs": len(day.evs),
        "uncontrolled": round(base.ledger.cost, 2),
        "cost": round(cost, 2),
        "optimum": round(best["cost"], 2),
        "savingsPct": round(savings_pct(cost, base.ledger.cost), 2),
        "gapPct": round(100 * (cost - best["cost"]) / best["cost"], 2),
        "peakKw": round(ours.ledger.peak_kw, 1),
        "optimumPeakKw": round(best["peak"], 1),
        "unmetEnergy": round(ours.unmet_energy, 1),
        "optimumUnmet": round(best["unmet"], 1),
        "delivered": round(ours.energy_delivered, 1),
        "uncontrolledDelivered": round(base.energy_delivered, 1),
        "batteryStartKwh": None if b is None else round(b.soc_start * b.capacity, 1),
        "batteryEndKwh": None if ours.battery_end_energy is None
        else round(ours.battery_end_energy, 1),
        "failedPlans": ours.plan_failures,
        "wallS": round(ours.wall_seconds, 1),
        # Build + solve of each plan (s): what a re-plan costs the station's computer.
        "solveS": [round(x, 4) for x in ours.plan_solve_seconds],
    }
    # Plain numbers for JSON (numpy scalars are not serialisable).
    return {k: v.item() if hasattr(v, "item") else v for k, v in row.items()}


def summary(rows: list[dict]) -> dict:
    sav = [r["savingsPct"] for r in rows]
    gap = [r["gapPct"] for r in rows]
    solves = [x for r in rows for x in r.get("solveS", [])]
    return {
        "days": len(rows),
        "savingsMin": min(sav), "savingsMedian": statistics.median(sav), "savingsMax": max(sav),
        "gapMedian": statistics.median(gap), "gapWorst": max(gap),
        "deliveredAtLeastUncontrolled": sum(
            bool(r["delivered"] >= r["uncontrolledDelivered"] - 0.05) for r in rows),
        "batteryEndAtLeastStart": sum(
            bool(r["batteryEndKwh"] is None or r["batteryEndKwh"] >= r["batteryStartKwh"] - 0.05)
            for r in rows),
        "failedPlans": sum(r["failedPlans"] for r in rows),
        "unmetEnergy": round(sum(r["unmetEnergy"] for r in rows), 1),
        "optimumUnmet": round(sum(r["optimumUnmet"] for r in rows), 1),
        "solveMedianS": statistics.median(solves) if solves else 0.0,
        "solveMaxS": max(solves, default=0.0),
    }


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
        "peakKw": round(r.ledger.peak_kw, 1),
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
        "requested": round(sum(ev.energy_needed for ev in day.evs), 1),
        "optimumCost": round(best["cost"], 2),
        "optimumPeak": round(best["peak"], 1),
        "optimumDelivered": round(sum(ev.energy_needed for ev in day.evs) - best["unmet"], 1),
        "optimumSolveS": round(best["solveSeconds"], 4),
        "planner": rows,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", type=Path, default=DEFAULT)
    ap.add_argument("--days", type=int, default=20, help="generated days (default 20)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--peak-floor", type=float, default=None, metavar="FACTOR",
                    help="plan the generated days with Tuning.peak_floor = FACTOR "
                         "(default: the Tuning's own)")
    ap.add_argument("--floor-same-day-type", action="store_true",
                    help="with --peak-floor: the floor from history days of the same day "
                         "type only")
    ap.add_argument("--scenarios", type=int, default=None, metavar="K",
                    help="plan the generated days with Tuning.scenarios = K (history days "
                         "in K groups; 1: the expected day alone; default: the Tuning's own)")
    ap.add_argument("--scenario-days", action="store_true",
                    help="with --scenarios: each group's median day's own sessions "
                         "(Tuning.scenario_days) instead of the group's forecast")
    ap.add_argument("--day-offset", type=int, default=0, choices=(0, 1, 2),
                    help="1 or 2: every generated day that many days later (held-out days "
                         "the default bench never measures)")
    args = ap.parse_args()
    tuning = Tuning()
    if args.peak_floor is not None:
        tuning = replace(tuning, peak_floor=args.peak_floor,
                         peak_floor_same_day_type=args.floor_same_day_type)
    if args.scenarios is not None:
        tuning = replace(tuning, scenarios=args.scenarios,
                         scenario_days=args.scenario_days)
    res = measure(args.scenario)
    rows = [day_row(*generated_day(i, args.day_offset), tuning=tuning) for i in range(args.days)]
    res["days"] = rows
    res["summary"] = summary(rows) if rows else {}
    res = json.loads(json.dumps(res, default=lambda v: v.item()))
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"{len(rows)} generated days, {HISTORY} days of history each")
    head = ("day", "EVs", "uncontr EUR", "ours EUR", "optimum EUR", "savings %", "gap %",
            "peak kW", "opt peak", "unmet kWh", "opt unmet", "batt start", "batt end", "failed")
    print(" | ".join(f"{h:>11}" for h in head))
    for r in rows:
        vals = (r["day"][-10:], r["evs"], r["uncontrolled"], r["cost"], r["optimum"],
                r["savingsPct"], r["gapPct"], r["peakKw"], r["optimumPeakKw"], r["unmetEnergy"],
                r["optimumUnmet"], r["batteryStartKwh"], r["batteryEndKwh"], r["failedPlans"])
        print(" | ".join(f"{v:>11}" for v in vals))
    if rows:
        sm = res["summary"]
        print(f"savings {sm['savingsMin']:.1f} .. {sm['savingsMax']:.1f} % (median "
              f"{sm['savingsMedian']:.1f}); gap median {sm['gapMedian']:.1f} %, worst "
              f"{sm['gapWorst']:.1f} %; delivered >= uncontrolled on "
              f"{sm['deliveredAtLeastUncontrolled']}/{sm['days']} days; battery end >= start "
              f"on {sm['batteryEndAtLeastStart']}/{sm['days']}; failed plans {sm['failedPlans']}")
    print()
    print(f"reference day {res['scenario']}")
    print(f"uncontrolled cost {res['baselineCost']:.2f} EUR, delivered "
          f"{res['baselineDelivered']:.1f} kWh; perfect-foresight optimum "
          f"{res['optimumCost']:.2f} EUR, peak {res['optimumPeak']:.1f} kW, delivered "
          f"{res['optimumDelivered']:.1f} kWh (one LP, {res['optimumSolveS'] * 1000:.0f} ms)")
    head = ("variant", "replan", "cost EUR", "savings %", "vs opt %", "peak kW", "deliv kWh",
            "unmet", "plans", "solve med s", "solve max s", "wall s")
    print(" | ".join(f"{h:>14}" for h in head))
    for r in res["planner"]:
        vals = (r["variant"], f"{r['replanMinutes']:g} min", r["cost"], r["savingsPct"],
                r["overOptimumPct"], r["peakKw"], r["energyDelivered"], r["unmetEnergy"],
                r["plans"], r["solveMedianS"], r["solveMaxS"], r["replayWallS"])
        print(" | ".join(f"{v:>14}" for v in vals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
