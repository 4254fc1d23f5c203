"""`sems write`: write typed values to holding registers (configured device or ad hoc).

    sems write --tcp 127.0.0.1:5020 --unit 3 200 11.5 --type float32
"""

from __future__ import annotations

import argparse

from agent.cli.commands._modbus import add_target_arguments, add_type_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("address", help="first holding register (protocol address, 0-based)")
    parser.add_argument("values", nargs="+", help="values to write, one per --type slot")
    add_target_arguments(parser)
    add_type_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import dataclasses
    import sys

    from agent.cli import UsageError
    from agent.cli.commands._modbus import make_point, parse_address, quiet_pymodbus, resolve_target
    from agent.cli.commands._output import print_json
    from drivers.codec import CodecError, encode
    from drivers.transport import Bus, TransportError

    quiet_pymodbus()
    endpoint, unit = resolve_target(args)
    first = parse_address(args.address)
    point = make_point(args, first)
    regs: list[int] = []
    for i, text in enumerate(args.values):
        p = dataclasses.replace(point, address=first + i * point.length)
        value: float | str
        if args.type == "string":
            value = text
        else:
            try:
                value = float(text)
            except ValueError:
                raise UsageError(f"values[{i}]: {text!r} is not a number") from None
        try:
            regs += encode(p, value)
        except CodecError as exc:
            raise UsageError(f"values[{i}]: {exc}") from None
    if len(regs) > 123:
        raise UsageError(f"values: {len(regs)} registers exceed the Modbus maximum of 123 per write")
    if first + len(regs) > 65536:
        raise UsageError("values: the write runs past register 65535")

    async def write() -> None:
        bus = Bus(endpoint, connect_timeout_s=args.timeout)
        try:
            await bus.write(unit, first, regs, timeout_s=args.timeout, retries=0)
        finally:
            await bus.close()

    try:
        asyncio.run(write())
    except TransportError as exc:
        print(f"sems write: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print_json({"endpoint": endpoint, "unit": unit, "address": first, "registers": regs})
    else:
        print(f"wrote {len(regs)} register(s) at {first} on {endpoint} unit {unit}: "
              + " ".join(f"{w:04x}" for w in regs))
    return 0
