"""`sems status [--watch]`: grid import against capacity, battery, PV, every connector's
session, limit, power and binding limit (in words: what limits it, and when the horizon plan
holds it, why: a cheaper slot later, the demand charge's peak, its schedule, V2G), uplink and
outbox state."""

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
    csms = c.get("csms_cap_kw")
    if binding == "cap" and csms is not None and c["limit_kw"] >= csms - 0.05:
        return f"held by the CSMS at {csms:g} kW"  # OCPP local controller mode
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


def _at(value: str | None, now: str | None, wide: bool) -> str:
    """A time the plan names, as HH:MM UTC (with the date when not within the day ahead)."""
    from datetime import datetime

    if value is None:
        return "-"
    if wide:
        return value
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
        ref = datetime.fromisoformat(now.replace("Z", "+00:00")) if now else None
    except ValueError:
        return value
    if ref is not None and t.date() != ref.date() and abs((t - ref).total_seconds()) > 12 * 3600:
        return t.strftime("%m-%d %H:%M")
    return t.strftime("%H:%M")


def held_words(h: dict[str, Any], c: dict[str, Any], st: dict[str, Any], wide: bool = False) -> str:
    """Why the horizon plan holds a connector's session, in words (the `held` field)."""
    now = st.get("ts")
    planned = float(h.get("planned_kw") or 0.0)
    until = f" until {_at(h['until'], now, wide)}" if h.get("until") else ""
    if h.get("open_ended"):
        due = "no target set"
    elif h.get("due_kwh") is not None and h.get("departure"):
        due = f"{h['due_kwh']:.0f} kWh due by {_at(h['departure'], now, wide)}"
    else:
        due = ""
    by = "held by the plan" if planned < 0.05 else f"slowed to {planned:.1f} kW by the plan"
    reason = h.get("reason")
    if reason == "price":
        now_price = f"{h['price_now_eur_kwh']:.2f} EUR/kWh now"
        if h.get("price_then_eur_kwh") is not None:
            then = f"{h['price_then_eur_kwh']:.2f} from {_at(h.get('until'), now, wide)}"
        else:
            then = f"above the {h['worth_eur_kwh']:.2f} a kWh is worth without a target"
        return f"{by}: {now_price}, {then}" + (f"; {due}" if due else "")
    if reason == "peak":
        verb = "held" if planned < 0.05 else "slowed"
        peak = h.get("peak_kw")
        if h.get("demand_charge_eur_kw"):
            text = f"{verb} to keep the day's peak at {peak:.0f} kW (demand charge)"
        else:
            text = f"{verb} to keep the import at the plan's {peak:.0f} kW"
        return text + until + (f"; {due}" if due else "")
    if reason == "schedule":
        when = _at(h.get("departure"), now, wide)
        return f"{by}: its target is planned in full by {when} (nothing more due)"
    if reason == "v2g":
        return (f"giving back {-planned:.1f} kW to the station (V2G){until}"
                + (f"; {due}" if due else ""))
    if reason == "grid":
        cap = st.get("power_cap_kw")
        what = "cap" if cap is not None and abs(cap - float(h.get("limit_kw") or 0)) < 0.5 \
            else "grid connection"
        return f"{by}: sharing the {h.get('limit_kw') or 0:.0f} kW {what} in the plan{until}"
    if reason == "charger":
        return (f"{by}: sharing charger {c['charger_id']}'s {h.get('limit_kw') or 0:.0f} kW "
                f"with its other connector{until}")
    return f"{by}{until}" + (f"; {due}" if due else "")


def held_short(h: dict[str, Any] | None, now: str | None, wide: bool = False) -> str | None:
    """The `held` field in a few words for a table column (`sems sessions`): its reason and
    until when, e.g. "price until 01:00"; None when not held."""
    if not h:
        return None
    return str(h.get("reason")) + (f" until {_at(h['until'], now, wide)}" if h.get("until") else "")


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
             c["limit_kw"], c["power_kw"], c["binding"],
             held_words(c["held"], c, st, wide) if c.get("held") else why(c["binding"], c, st)]
            for c in st["connectors"]]  # fmt: skip
    header = ["connector", "state", "session", "limit kW", "power kW", "binding", "what limits it"]
    if any(c.get("phases") for c in st["connectors"]):  # hardware sessions: learned or configured
        header.insert(5, "phases")
        for row, c in zip(rows, st["connectors"], strict=True):
            row.insert(5, c.get("phases") or "-")
    lines += ["", table(header, rows)]
    if st.get("circuits"):
        lines += ["", "circuits (metered: measured; else the EVs' load from connector power, each EV on "
                  "its phases as in the table above):"]
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
