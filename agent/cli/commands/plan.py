"""`sems plan`: the plan the running agent follows, or a whole-day plan for a day file.

Without `--scenario` it asks the running agent (GET /api/v1/plan) for the rolling plan that
guides its control loop now. With `--scenario FILE` it plans a station day file offline with
every EV known ahead (what a depot with a published vehicle schedule can do), the same LP
the agent runs.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Any

from agent.cli.client import add_client_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_client_arguments(parser)
    parser.add_argument("--scenario", metavar="FILE",
                        help="plan this station day file offline instead of asking the agent")
    parser.add_argument("--slots", type=int, default=16, metavar="N",
                        help="slots to show in the table (default 16; --json gives all)")


def run(args: argparse.Namespace) -> int:
    from agent.cli import UsageError
    from agent.cli.commands._output import print_json, with_agent

    if not 1 <= args.slots <= 10_000:
        raise UsageError("--slots: must be 1..10000")
    if args.scenario is not None:
        view = _offline(args.scenario)
        print_json(view) if args.json else print(render(view, args.slots))
        return 0

    def body(client: Any) -> int:
        view = client.get("/api/v1/plan")["plan"]
        if view is None:
            print(f"sems {args.command}: the agent has no plan (planner disabled, or no "
                  "plan has succeeded yet: see sems status)", file=sys.stderr)
            return 1
        print_json(view) if args.json else print(render(view, args.slots))
        return 0

    return with_agent(args, body)


def _offline(path: str) -> dict[str, Any]:
    from agent.cli import UsageError
    from agent.energy.planning import plan_rows
    from agent.energy.replay import DayError, load_day, optimum_request
    from allocator.planner import PlanError, Planner

    try:
        day = load_day(path)
        plan = Planner(time_limit=60.0).plan(optimum_request(day))
    except (DayError, PlanError) as exc:
        raise UsageError(str(exc)) from None
    return {**plan_rows(plan, day.start), "stationId": day.station_id}


def render(view: dict[str, Any], limit: int) -> str:
    from agent.cli.commands._output import table

    rows = view["slots"][:limit]
    head = f"plan from {view['start']}: planned peak {view['peakKw']:.1f} kW"
    unmet = view.get("unmetKwh") or {}
    if unmet:
        head += f"; short of target: {', '.join(f'{k} {v:.1f} kWh' for k, v in unmet.items())}"
    status = view.get("status")
    if status:
        head += f"\nlast plan {status.get('lastPlanAt')} ({status.get('lastReason')}, {status.get('lastSolveMs')} ms)"
    body = table(
        ["slot", "grid kW", "cap kW", "battery kW", "sessions (target kW)"],
        [[datetime.fromisoformat(r["start"]).strftime("%m-%d %H:%M"), r["gridKw"], r["importCapKw"],
          r["batteryKw"], " ".join(f"{k}={v:g}" for k, v in r["sessions"].items()) or "-"]
         for r in rows])
    more = len(view["slots"]) - len(rows)
    return head + "\n" + body + (f"\n(+{more} more slots: --slots N or --json)" if more > 0 else "")
