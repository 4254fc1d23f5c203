"""`sems sessions`: active sessions (limit, power, energy, binding), or recent history."""

from __future__ import annotations

import argparse
from typing import Any

from agent.cli.client import add_client_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_client_arguments(parser)
    parser.add_argument("--history", type=int, metavar="N", nargs="?", const=50,
                        help="show the N most recent sessions from the store instead (default 50)")


def run(args: argparse.Namespace) -> int:
    from agent.cli import UsageError
    from agent.cli.commands._output import print_json, table, with_agent

    if args.history is not None and not 1 <= args.history <= 1000:
        raise UsageError("--history: must be 1..1000")

    def body(client: Any) -> int:
        if args.history is not None:
            rows = client.get("/api/v1/station/history", limit=args.history)["sessions"]
            if args.json:
                print_json(rows)
                return 0
            print(table(["session", "connector", "kind", "source", "status", "started", "stopped", "kWh", "peak kW"],
                        [[r["id"][:8], f"{r['charger_id']}#{r['connector_idx']}", r["kind"], r["source"],
                          r["status"], r["started_at"], r["stopped_at"], r["energy_kwh"], r["peak_kw"]]
                         for r in rows]))
            return 0
        sessions = client.get("/api/v1/station/sessions")["sessions"]
        if args.json:
            print_json(sessions)
            return 0
        if not sessions:
            print("no active sessions")
            return 0
        print(table(["session", "connector", "kind", "source", "limit kW", "power kW", "vehicle max", "kWh",
                     "binding", "vehicle", "fleet", "started"],
                    [[s["session_id"][:8], f"{s['charger_id']}#{s['idx']}", s["kind"], s["source"],
                      s["allocated_kw"], s["consumed_kw"], s["vehicle_max_kw"], s["energy_kwh"], s["binding"],
                      s["vehicle_id"], s["fleet_id"], s["started_at"]] for s in sessions]))
        return 0

    return with_agent(args, body)
