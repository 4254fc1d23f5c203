"""`sems outbox`: the uplink's connection and what waits in the SQLite outbox, by kind."""

from __future__ import annotations

import argparse
from typing import Any

from agent.cli.client import add_client_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_client_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from agent.cli.commands._output import fmt, print_json, table, with_agent

    def body(client: Any) -> int:
        up = client.get("/api/v1/uplink")
        if args.json:
            print_json(up)
            return 0
        if not up["configured"]:
            print("uplink not configured")
        else:
            print(f"broker {'connected' if up['connected'] else 'DISCONNECTED'}   outbox {up['outbox_rows']} rows, "
                  f"{up['outbox_bytes']} bytes   dropped {up['dropped']}   last ack {fmt(up['last_ack'])}")
        if up["by_kind"]:
            print(table(["kind", "rows", "oldest seq", "newest seq", "bytes"],
                        [[k["kind"], k["rows"], k["oldest_seq"], k["newest_seq"], k["bytes"]] for k in up["by_kind"]]))
        else:
            print("outbox empty")
        return 0

    return with_agent(args, body)
