"""`sems ocpp log CP_ID`: a charge point's last OCPP messages (both ways, and to / from the
operator's CSMS in local controller mode); `ocpp_table` is the OCPP part of `sems devices`."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from agent.cli.client import add_client_arguments

ARROWS = {"in": "charger ->", "out": "-> charger", "to_csms": "-> CSMS", "from_csms": "CSMS ->"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="ocpp_command", metavar="SUBCOMMAND")
    sub.required = True
    log = sub.add_parser("log", help="a charge point's last messages, oldest first")
    log.add_argument("charge_point_id", metavar="CP_ID")
    log.add_argument("-n", "--limit", type=int, default=50, help="how many (1..200, default 50)")
    add_client_arguments(log)


def _ts(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def ocpp_table(devices: list[dict[str, Any]]) -> str:
    """One line per OCPP connector: version, boot info, heartbeat, connection, last profile."""
    from agent.cli.commands._output import table

    rows = []
    for d in devices:
        o = d["ocpp"]
        boot = o.get("boot") or {}
        who = " ".join(str(boot[k]) for k in ("vendor", "vendor_name", "model") if boot.get(k))
        state = "connected" if o.get("connected") else "disconnected"
        up = o.get("upstream")
        if up is not None:
            state += ", CSMS " + ("up" if up.get("connected") else f"down ({up.get('queued')} queued)")
        if o.get("connected") and not (o.get("maxProfile") or {}).get("opened", True):
            state += ", held at fallback"  # a connector has no accepted profile of its own yet
        for c in o.get("connectors") or [{}]:
            prof = c.get("lastProfile") or {}
            sched = prof.get("chargingSchedule")
            sched = sched[0] if isinstance(sched, list) and sched else sched or {}
            periods = sched.get("chargingSchedulePeriod") or [{}]
            last = (f"{prof.get('chargingProfilePurpose', '')} {periods[0].get('limit', '')} "
                    f"{sched.get('chargingRateUnit', '')}").strip()
            rows.append([f"{o['chargePointId']}#{c.get('idx', '-')}", o.get("version"), who or "-",
                         _ts(o.get("lastHeartbeat")), state, last or "-",
                         c.get("lastAnswer") or "-"])
    return table(["charge point", "ocpp", "boot", "last heartbeat", "connection", "last profile",
                  "answer"], rows)


def run(args: argparse.Namespace) -> int:
    from agent.cli import UsageError
    from agent.cli.commands._output import print_json, with_agent

    if not 1 <= args.limit <= 200:
        raise UsageError("--limit: must be 1..200")

    def body(client: Any) -> int:
        messages = client.get(f"/api/v1/ocpp/{args.charge_point_id}/log",
                              limit=args.limit)["messages"]
        if args.json:
            print_json(messages)
            return 0
        if not messages:
            print(f"no messages from or to {args.charge_point_id} yet")
        for m in messages:
            print(f"{_ts(m['ts'])} {ARROWS.get(m['dir'], m['dir']):>11} {m['msg']}")
        return 0

    return with_agent(args, body)
