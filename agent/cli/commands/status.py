"""`sems status [--watch]`: grid import against capacity, battery, PV, every connector's
session, limit, power and binding limit, uplink and outbox state."""

from __future__ import annotations

import argparse
from typing import Any

from agent.cli.client import add_client_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_client_arguments(parser)
    parser.add_argument("--watch", type=float, metavar="SECONDS", nargs="?", const=1.0,
                        help="refresh every SECONDS (default 1) until Ctrl-C")
    parser.add_argument("--count", type=int, default=None, help="with --watch: stop after N refreshes")
    from agent.cli.commands._output import add_wide_argument

    add_wide_argument(parser)


def why(binding: str | None, c: dict[str, Any], st: dict[str, Any]) -> str:
    """What limits a connector's session, in words (the allocator's binding limit)."""
    if not binding or not c.get("session_id"):
        return ""
    cap = st.get("power_cap_kw")
    grid = (f"a {cap:g} kW cap" if cap is not None else
            f"the {st['grid_capacity_kw']:g} kW grid connection")
    return {
        "vehicle": "the vehicle takes no more",
        "cap": "draws less than offered: capped near its draw",
        "charger": f"charger {c['charger_id']} is at its rated power, shared by its connectors",
        "station": f"sharing {grid} with the other sessions",
        "minimum": "paused: too little power left for its minimum",
        "circuit": "sharing a sub-board fuse (see circuits below)",
    }.get(binding, binding)


def render(st: dict[str, Any], wide: bool = False) -> str:
    from agent.cli.commands._output import fmt, short_id, short_time, table

    cap = st["grid_capacity_kw"]
    grid = st["grid_power_kw"]
    share = f" ({grid / cap * 100:.0f}% of capacity)" if grid is not None and cap else ""
    lines = [
        f"station {st['station_id']}  {short_time(st['ts'], wide)}  mode {st['mode']}  "
        f"cycles {st['cycles']}",
        f"grid    {fmt(grid)} / {fmt(cap)} kW{share}"
        + (f"  cap {fmt(st['power_cap_kw'])} kW" if st.get("power_cap_kw") is not None else ""),
        f"EVs     {fmt(st['ev_power_kw'])} kW   base load {fmt(st['base_load_kw'])} kW   PV {fmt(st['pv_power_kw'])} kW",
        f"battery SoC {fmt(st['battery_soc'])} %   power {fmt(st['battery_power_kw'])} kW (> 0 discharging)",
    ]
    if st.get("cycle_ms"):
        c = st["cycle_ms"]
        lines.append(f"cycle   p50 {fmt(c.get('p50'), 2)} ms  p99 {fmt(c.get('p99'), 2)} ms  "
                     f"max {fmt(c.get('max'), 2)} ms  overruns {st['overruns']}")
    if st.get("degraded"):
        lines.append("DEGRADED: " + ", ".join(st["degraded"]))
    up = st.get("uplink")
    lines.append("uplink  not configured" if up is None else
                 f"uplink  {'connected' if up['connected'] else 'DISCONNECTED'}  outbox {up['outbox_rows']} rows "
                 f"({up['outbox_bytes']} B)  dropped {up['dropped']}  last ack {fmt(up['last_ack'])}")
    rows = [[f"{c['charger_id']}#{c['idx']}", c["state"], short_id(c["session_id"], wide),
             c["limit_kw"], c["power_kw"], c["binding"], why(c["binding"], c, st)]
            for c in st["connectors"]]  # fmt: skip
    lines += ["", table(["connector", "state", "session", "limit kW", "power kW", "binding",
                         "what limits it"], rows)]
    if st.get("circuits"):
        lines += ["", "circuits (metered: measured; else the EVs' load from connector power, each EV on "
                  "all its charger's phases):"]
        lines.append(table(["circuit", "parent", "L1 A", "L2 A", "L3 A", "fuse A", "kW", "max kW"], [
            [c["id"], c["parent"] or "-", *(fmt(a, 1) for a in c["current_a"]),
             fmt(c["max_current_a"], 0), fmt(c["power_kw"]), fmt(c["max_power_kw"])]
            for c in st["circuits"]]))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import sys
    import time

    from agent.cli import UsageError
    from agent.cli.commands._output import print_json, with_agent

    if args.watch is not None and args.watch <= 0:
        raise UsageError("--watch: must be a positive number of seconds")

    def body(client: Any) -> int:
        shown = 0
        while True:
            st = client.get("/api/v1/station")
            if args.json:
                print_json(st)
            else:
                if args.watch is not None and sys.stdout.isatty():
                    sys.stdout.write("\x1b[2J\x1b[H")
                print(render(st, args.wide), flush=True)
            shown += 1
            if args.watch is None or (args.count is not None and shown >= args.count):
                return 0
            time.sleep(args.watch)  # a display refresh, not control logic

    return with_agent(args, body)
