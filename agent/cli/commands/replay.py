"""`sems replay`: run a station day file in simulated time and report cost and savings."""

from __future__ import annotations

import argparse
import json
import math

# Printed in this order; the JSON keys are the contract (issue 7).
_ROWS = (
    ("cost", "cost (EUR)"),
    ("baselineCost", "uncontrolled cost (EUR)"),
    ("savingsPct", "savings (%)"),
    ("optimumCost", "perfect-foresight optimum (EUR)"),
    ("peakKw", "peak 15-min import (kW)"),
    ("energyRequested", "energy requested (kWh)"),
    ("energyDelivered", "energy delivered (kWh)"),
    ("unmetEnergy", "unmet energy (kWh)"),
    ("v2gEnergy", "V2G energy (kWh)"),
    ("batteryThroughput", "battery throughput (kWh)"),
    ("co2Kg", "CO2 (kg)"),
    ("batteryStartKwh", "battery at start (kWh)"),
    ("batteryEndKwh", "battery at end (kWh)"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenario", required=True, metavar="FILE",
                        help="station day file (format described inside reference-day.json)")
    parser.add_argument("--history", nargs="+", default=[], metavar="DAY.json",
                        help="earlier days of the same station: the arrival forecast learns "
                             "from their sessions before the day is replayed")
    parser.add_argument("--policy", choices=("planner", "uncontrolled", "fair"),
                        default="planner",
                        help="planner (default), the uncontrolled counterfactual, or fair "
                             "sharing with the battery but no plan")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--step", type=float, default=60.0, metavar="SECONDS",
                        help="simulation step, (0, 60] seconds (default 60)")
    parser.add_argument("--replan", type=float, default=15.0, metavar="MINUTES",
                        help="re-plan period in simulated minutes (also on every arrival)")
    parser.add_argument("--solve-time-limit", type=float, default=5.0, metavar="SECONDS",
                        help="HiGHS time limit per re-plan (default 5); a re-plan that fails "
                             "or runs out of time is counted and the replay goes on")


def run(args: argparse.Namespace) -> int:
    from agent.cli import UsageError
    from agent.energy.replay import DayError, load_day
    from agent.energy.replay import run as replay

    if not 0 < args.replan <= 24 * 60:
        raise UsageError("--replan: must be in (0, 1440] minutes")
    if not (math.isfinite(args.solve_time_limit) and args.solve_time_limit > 0):
        raise UsageError("--solve-time-limit: must be > 0 seconds")
    try:
        day = load_day(args.scenario)
        history = [load_day(h) for h in args.history]
        report = replay(day, args.policy, step_s=args.step, replan_minutes=args.replan,
                        solve_time_limit=args.solve_time_limit, history=history)
    except DayError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{day.station_id}: {len(day.evs)} EVs, {day.hours:g} h, policy {args.policy}")
    for key, label in _ROWS:
        value = report[key]
        print(f"  {label:<34} " + ("{:>10}".format("n/a") if value is None else f"{value:>10.2f}"))
    if "optimumError" in report:
        print(f"  optimum not computed: {report['optimumError']}")
    print(f"  {'failed re-plans (fair sharing)':<34} {report['failedPlans']:>10d}")
    for cid, amps in report.get("circuitPeakA", {}).items():
        print(f"  {'circuit ' + cid + ' peak A (L1 L2 L3)':<34} "
              + " ".join(f"{a:>7.2f}" for a in amps))
    return 0
