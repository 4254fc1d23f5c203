"""`sems sessions`: active sessions (limit, power, energy, binding, and why the horizon plan
holds one: e.g. "price until 01:00"), or recent history."""

from __future__ import annotations

import argparse
from typing import Any

from agent.cli.client import add_client_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_client_arguments(parser)
    parser.add_argument("--history", type=int, metavar="N", nargs="?", const=50,
                        help="show the N most recent sessions from the store instead (default 50)")
    from agent.cli.commands._output import add_wide_argument

    add_wide_argument(parser)


def run(args: argparse.Namespace) -> int:
    from agent.cli import UsageError
    from agent.cli.commands._output import print_json, short_id, short_time, table, with_agent

    if args.history is not None and not 1 <= args.history <= 1000:
        raise UsageError("--history: must be 1..1000")

    def body(client: Any) -> int:
        if args.history is not None:
            rows = client.get("/api/v1/station/history", limit=args.history)["sessions"]
            if args.json:
                print_json(rows)
                return 0
            print(table(["session", "connector", "kind", "source", "status", "started", "stopped", "kWh", "peak kW"],
                        [[short_id(r["id"], args.wide), f"{r['charger_id']}#{r['connector_idx']}",
                          r["kind"], r["source"], r["status"], short_time(r["started_at"], args.wide),
                          short_time(r["stopped_at"], args.wide), r["energy_kwh"], r["peak_kw"]]
                         for r in rows]))
            return 0
        sessions = client.get("/api/v1/station/sessions")["sessions"]
        if args.json:
            print_json(sessions)
            return 0
        if not sessions:
            print("no active sessions")
            return 0
        print(render(sessions, args.wide))
        return 0

    return with_agent(args, body)


def render(sessions: list[dict[str, Any]], wide: bool = False, now: str | None = None) -> str:
    """The active sessions' table. `held`: why the horizon plan holds it, in a few words
    (the same `held` field `sems status` puts in sentences); `now` (ISO-8601, default the
    clock) decides whether a time needs its date."""
    from datetime import UTC, datetime

    from agent.cli.commands._output import short_id, short_time, table
    from agent.cli.commands.status import held_short

    now = now or datetime.now(UTC).isoformat()
    return table(["session", "connector", "kind", "source", "limit kW", "power kW", "vehicle max", "kWh",
                  "binding", "held", "vehicle", "fleet", "started"],
                 [[short_id(s["session_id"], wide), f"{s['charger_id']}#{s['idx']}", s["kind"],
                   s["source"], s["allocated_kw"], s["consumed_kw"], s["vehicle_max_kw"],
                   s["energy_kwh"], s["binding"], held_short(s.get("held"), now, wide),
                   s["vehicle_id"], s["fleet_id"], short_time(s["started_at"], wide)]
                  for s in sessions])
