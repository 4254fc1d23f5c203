"""`sems devices`: each device's link state, latency, errors and last error; OCPP chargers
also their version, boot info, heartbeat, connection and last profile with its answer."""

from __future__ import annotations

import argparse
from typing import Any

from agent.cli.client import add_client_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_client_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from agent.cli.commands._output import print_json, table, with_agent

    def body(client: Any) -> int:
        devices = client.get("/api/v1/devices")["devices"]
        if args.json:
            print_json(devices)
            return 0
        if not devices:
            print("no devices configured (chargers known through the API only)")
            return 0
        rows = [[d["name"], d["kind"], d["endpoint"], d["state"], d["latency_ms_p50"], d["latency_ms_p99"],
                 sum(d["errors"].values()), d["last_ok"],
                 # a SunSpec device without some models its profile reads: say which
                 d["last_error"] if not d.get("missing") else f"{d['last_error'] or ''} "
                 f"(missing SunSpec {d['missing']})".strip()] for d in devices]
        print(table(["device", "kind", "endpoint", "state", "p50 ms", "p99 ms", "errors", "last ok",
                     "last error"], rows))
        ocpp = [d for d in devices if d.get("ocpp")]
        if ocpp:
            from agent.cli.commands.ocpp import ocpp_table

            print()
            print(ocpp_table(ocpp))
        # Exit 1 when a device is offline, so scripts and checks can react.
        return 1 if any(d["state"] == "offline" for d in devices) else 0

    return with_agent(args, body)
