"""`sems read`: raw registers from a configured device or an ad hoc Modbus line, typed.

    sems read --tcp 127.0.0.1:5020 --unit 1 100 --type float32 --word-order little --count 2
"""

from __future__ import annotations

import argparse

from agent.cli.commands._modbus import add_target_arguments, add_type_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("address", help="first register (protocol address, 0-based; decimal or 0x hex)")
    parser.add_argument("--count", type=int, default=1, help="number of values to read (default 1)")
    parser.add_argument("--table", choices=("holding", "input"), default="holding")
    add_target_arguments(parser)
    add_type_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import dataclasses
    import sys

    from agent.cli import UsageError
    from agent.cli.commands._modbus import make_point, parse_address, quiet_pymodbus, resolve_target
    from agent.cli.commands._output import print_json, table
    from drivers.codec import CodecError, decode
    from drivers.transport import Bus, TransportError

    if not 1 <= args.count <= 125:
        raise UsageError("--count: must be 1..125")
    quiet_pymodbus()
    endpoint, unit = resolve_target(args)
    first = parse_address(args.address)
    point = make_point(args, first, args.table)
    total = point.length * args.count
    if first + total > 65536:
        raise UsageError("--count: the read runs past register 65535")
    if total > 125:
        raise UsageError(f"--count: {total} registers exceed the Modbus maximum of 125 per read")

    async def read() -> list[int]:
        bus = Bus(endpoint, connect_timeout_s=args.timeout)
        try:
            return await bus.read(unit, args.table, first, total, timeout_s=args.timeout, retries=0)
        finally:
            await bus.close()

    try:
        regs = asyncio.run(read())
    except TransportError as exc:
        print(f"sems read: {exc}", file=sys.stderr)
        return 1
    rows = []
    for i in range(args.count):
        chunk = regs[i * point.length:(i + 1) * point.length]
        p = dataclasses.replace(point, address=first + i * point.length)
        try:
            value: object = decode(p, chunk)
        except CodecError as exc:
            value = f"invalid: {exc}"
        rows.append({"address": p.address, "registers": chunk, "value": value})
    if args.json:
        print_json({"endpoint": endpoint, "unit": unit, "type": args.type, "values": rows})
    else:
        print(table(["address", "registers (hex)", args.type],
                    [[r["address"], " ".join(f"{w:04x}" for w in r["registers"]), r["value"]] for r in rows]))
    return 0
