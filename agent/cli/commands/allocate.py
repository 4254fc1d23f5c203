"""`sems allocate FILE|-`: share a station's power for one request or a JSON array of them.

Prints the result (or an array of results) as JSON, or with --table as aligned tables.
Bad input (unreadable file, invalid JSON, invalid request) is one line on stderr, exit 2,
and nothing on stdout: every request is validated and solved before anything is printed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agent.cli import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE",
                        help="request JSON (DESIGN.md 'Allocation'), or - for stdin; "
                             "one object or an array of them")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--table", action="store_true", help="print human tables instead of JSON")
    out.add_argument("--json", action="store_true", help="print JSON (the default), for scripts")


def _read(name: str) -> str:
    if name == "-":
        return sys.stdin.read()
    try:
        with open(name, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise UsageError(f"{name}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{name}: not UTF-8 text") from None


def _kw(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def render_table(request: dict[str, Any], result: dict[str, Any]) -> str:
    """One station's result as a table: sessions, then battery and grid (all kW)."""
    from agent.cli.commands._output import table

    rows = []
    currents = result.get("currents")  # a tree request: A per grid phase, and which circuit
    for s in request.get("sessions") or []:
        sid = s["sessionId"]
        binding = result["binding"][sid]
        if binding == "circuit":
            binding = f"circuit {result['bindingCircuit'][sid]}"
        row = [sid, s["connectorId"]["chargerId"], str(s["connectorId"]["idx"]),
               _kw(s["vehicleMaxPower"]), _kw(s.get("powerCap")), _kw(s.get("minPower")),
               str(s.get("priority") or 0), _kw(result["allocations"][sid]), binding]
        if currents is not None:
            row.insert(8, " / ".join(f"{a:.1f}" for a in currents[sid]))
        rows.append(row)
    head = (f"station {request.get('stationId') or '-'}: grid capacity "
            f"{_kw(request['gridCapacity'])} kW, base load {_kw(request.get('baseLoad') or 0.0)} kW, "
            f"PV {_kw(request.get('pvPower') or 0.0)} kW")
    columns = ["session", "charger", "idx", "vehicle max", "cap", "min", "prio", "allocated",
               "binding"]
    if currents is not None:
        columns.insert(8, "A L1 / L2 / L3")
    body = table(columns, rows) if rows else "(no sessions)"
    battery = result["batteryPower"]
    state = "discharging" if battery > 0 else "charging" if battery < 0 else "idle"
    grid = result["gridPower"]
    foot = (f"EVs {_kw(sum(result['allocations'].values()))} kW, battery {_kw(battery)} kW ({state}), "
            f"grid {_kw(grid)} kW ({'import' if grid >= 0 else 'export'})")
    return "\n".join([head, body, foot])


def run(args: argparse.Namespace) -> int:
    import json

    from allocator import AllocationError, allocate

    name = "stdin" if args.file == "-" else args.file
    text = _read(args.file)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{name}: invalid JSON at line {exc.lineno} column {exc.colno}: "
                         f"{exc.msg}") from None
    except RecursionError:
        raise UsageError(f"{name}: invalid JSON: nested too deeply") from None
    requests = data if isinstance(data, list) else [data]
    results = []
    for k, request in enumerate(requests):
        try:
            results.append(allocate(request))
        except AllocationError as exc:
            raise UsageError(f"[{k}].{exc}" if isinstance(data, list) else str(exc)) from None

    if args.table:
        print("\n\n".join(render_table(q, r) for q, r in zip(requests, results, strict=True)))
    else:
        print(json.dumps(results if isinstance(data, list) else results[0], indent=2))
    return 0
