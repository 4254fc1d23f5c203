"""`sems scan --rtu DEVICE`: find the unit ids answering on an RS-485 bus (or a TCP gateway).

Each id is probed with one small read; an answer, even a Modbus exception, means a device
owns that id. A silent id costs one timeout, so the default range and timeout are modest.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--rtu", metavar="DEVICE", help="serial device of the RS-485 bus")
    where.add_argument("--tcp", metavar="HOST:PORT", help="a Modbus TCP gateway in front of a bus")
    where.add_argument("--sunspec", metavar="HOST[:PORT]",
                       help="list the SunSpec models of a Modbus TCP device (bases 40000, 0, "
                            "50000) on each unit id of --first..--last")
    parser.add_argument("--baud", type=int, default=9600, help="line speed (default 9600)")
    parser.add_argument("--parity", choices=("N", "E", "O"), default="N")
    parser.add_argument("--first", type=int, default=1, help="first unit id (default 1)")
    parser.add_argument("--last", type=int, default=32, help="last unit id (default 32)")
    parser.add_argument("--address", default="0", help="register probed (default 0)")
    parser.add_argument("--table", choices=("holding", "input"), default="holding")
    parser.add_argument("--timeout", type=float, default=0.2, help="per-id timeout, seconds (default 0.2)")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def _bar(done: int, total: int, found: int, width: int = 30) -> str:
    filled = int(width * done / total)
    return f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} ids, {found} found"


def run(args: argparse.Namespace) -> int:
    import asyncio
    import sys

    if args.sunspec:
        from agent.cli.commands.scan_sunspec import run_sunspec

        return run_sunspec(args)

    from agent.cli import UsageError
    from agent.cli.commands._modbus import parse_address, quiet_pymodbus, resolve_target
    from agent.cli.commands._output import print_json, table
    from drivers.transport import Bus, TransportError

    if not 0 <= args.first <= args.last <= 247:
        raise UsageError("--first/--last: need 0 <= first <= last <= 247")
    if args.timeout <= 0:
        raise UsageError("--timeout: must be positive")
    args.device = None
    args.unit = args.first
    quiet_pymodbus()
    endpoint, _ = resolve_target(args)
    address = parse_address(args.address)
    ids = range(args.first, args.last + 1)
    progress = not args.json and sys.stderr.isatty()

    async def scan() -> list[dict[str, object]]:
        bus = Bus(endpoint, connect_timeout_s=max(args.timeout, 1.0), timeouts_before_reconnect=10**6)
        found: list[dict[str, object]] = []
        try:
            for n, unit in enumerate(ids, 1):
                try:
                    regs = await bus.read(unit, args.table, address, 1, timeout_s=args.timeout, retries=0)
                    found.append({"unit": unit, "answer": "registers", "value": regs[0]})
                except TransportError as exc:
                    # A Modbus exception is still an answer from that id, except a gateway's
                    # "path unavailable" / "target failed to respond" (10, 11): nobody there.
                    if exc.kind == "exception" and exc.code not in (10, 11):
                        found.append({"unit": unit, "answer": "exception", "value": str(exc)})
                    elif exc.kind == "disconnected" and n == 1:
                        raise
                if progress:
                    sys.stderr.write(_bar(n, len(ids), len(found)))
                    sys.stderr.flush()
        finally:
            await bus.close()
            if progress:
                sys.stderr.write("\n")
        return found

    try:
        found = asyncio.run(scan())
    except TransportError as exc:
        print(f"sems scan: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print_json({"endpoint": endpoint, "scanned": [args.first, args.last], "found": found})
    elif found:
        print(table(["unit", "answer", "value"], [[f["unit"], f["answer"], f["value"]] for f in found]))
    else:
        print(f"no unit answered on {endpoint} (ids {args.first}..{args.last})")
    return 0 if found else 1
