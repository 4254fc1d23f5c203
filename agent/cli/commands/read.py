"""`sems read`: registers from a configured device or an ad hoc Modbus line, typed.

    sems read --tcp 127.0.0.1:5020 --unit 1 100 --type float32 --word-order little --count 2
    sems read --device grid power_total       # a point of the device's profile, by name
    sems read --device grid                   # every readable point of its profile
    sems read --tcp 192.0.2.10:502 --unit 1 --profile eastron-sdm630 voltage_l1

A failed read says why (refused, timeout, no route, not Modbus, wrong unit id) and what to
run next (agent/cli/commands/_diagnose.py).
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from agent.cli.commands._modbus import add_target_arguments, add_type_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("address", nargs="?",
                        help="first register (protocol address, 0-based; decimal or 0x hex), or "
                             "a point name of the device's profile; none: every profile point")
    parser.add_argument("--count", type=int, default=1, help="number of values to read (default 1)")
    parser.add_argument("--table", choices=("holding", "input"), default="holding")
    parser.add_argument("--profile", metavar="NAME",
                        help="profile for point names with --tcp/--rtu (default: the --device's)")
    parser.add_argument("--connector", type=int, default=1,
                        help="connector of a charger's per-connector point (default 1)")
    add_target_arguments(parser)
    add_type_arguments(parser)


def plain(point: Any, value: Any) -> Any:
    """An integer register without scale prints as an integer (3, not 3.0)."""
    if (isinstance(value, float) and value.is_integer() and point.scale == 1.0
            and point.offset == 0.0 and "int" in point.type):  # fmt: skip
        return int(value)
    return value


def run(args: argparse.Namespace) -> int:
    import asyncio
    import sys

    from agent.cli import UsageError
    from agent.cli.commands._diagnose import explain
    from agent.cli.commands._modbus import make_point, parse_address, quiet_pymodbus, resolve_target
    from agent.cli.commands._output import print_json, table
    from drivers.codec import CodecError, decode
    from drivers.transport import Bus, TransportError

    if not 1 <= args.count <= 125:
        raise UsageError("--count: must be 1..125")
    quiet_pymodbus()
    endpoint, unit = resolve_target(args)
    named = args.address is None or not args.address[:1].isdigit()
    if named:
        requests = [(unit + shift if p.device_id is None else int(p.device_id), [p])
                    for shift, p in _profile_points(args)]  # fmt: skip
    else:
        first = parse_address(args.address)
        point = make_point(args, first, args.table)
        total = point.length * args.count
        if first + total > 65536:
            raise UsageError("--count: the read runs past register 65535")
        if total > 125:
            raise UsageError(f"--count: {total} registers exceed the Modbus maximum of 125 per read")
        requests = [(unit, [dataclasses.replace(point, address=first + i * point.length)
                            for i in range(args.count)])]  # fmt: skip

    async def read() -> list[tuple[Any, list[int]]]:
        bus = Bus(endpoint, connect_timeout_s=args.timeout)
        got: list[tuple[Any, list[int]]] = []
        try:
            for u, pts in requests:
                n = sum(p.length for p in pts)
                regs = await bus.read(u, pts[0].table, pts[0].address, n, timeout_s=args.timeout,
                                      retries=0)  # fmt: skip
                at = 0
                for p in pts:
                    got.append((p, regs[at:at + p.length]))
                    at += p.length
        finally:
            await bus.close()
        return got

    try:
        got = asyncio.run(read())
    except TransportError as exc:
        failed_unit = requests[0][0]
        why, step = explain(endpoint, failed_unit, str(exc), args.timeout)
        print(f"sems read: {why}; try: {step}", file=sys.stderr)
        return 1
    rows = []
    for p, chunk in got:
        try:
            value: object = plain(p, decode(p, chunk))
        except CodecError as exc:
            value = f"invalid: {exc}"
        rows.append({"name": p.name if named else None, "address": p.address, "registers": chunk,
                     "value": value, "unit": p.unit or None})  # fmt: skip
    if args.json:
        print_json({"endpoint": endpoint, "unit": unit, "type": None if named else args.type,
                    "values": rows})  # fmt: skip
    elif named:
        print(table(["point", "value", "unit", "address", "registers (hex)"],
                    [[r["name"], r["value"], r["unit"] or "", r["address"],
                      " ".join(f"{w:04x}" for w in r["registers"])] for r in rows]))  # fmt: skip
    else:
        print(table(["address", "registers (hex)", args.type],
                    [[r["address"], " ".join(f"{w:04x}" for w in r["registers"]), r["value"]] for r in rows]))
    return 0


def _profile_points(args: argparse.Namespace) -> list[tuple[int, Any]]:
    """The named point (or every readable one) of the profile, at its place for --connector,
    each with what to add to the unit id (chargers with a unit id per connector)."""
    from agent.cli import UsageError
    from drivers import ProfileError, load_profile

    name = args.profile
    if name is None and args.device:
        from agent.config.settings import load

        name = next(d.profile for d in load(args.config).devices if d.name == args.device)
    if name is None:
        raise UsageError("address: a point name needs a profile (--device, or --profile NAME)")
    try:
        profile = load_profile(name)
    except ProfileError as exc:
        raise UsageError(f"--profile: {exc}") from None
    if profile.sunspec:
        raise UsageError(f"{name}: a SunSpec profile (points found at run time): read its "
                         "registers by address, or see `sems devices` for the agent's view")
    if args.address is None:
        points = [p for p in profile.points if p.readable]
    else:
        point = profile.point(args.address)
        if point is None:
            known = ", ".join(p.name for p in profile.points if p.readable)
            raise UsageError(f"address: no point {args.address!r} in {name} (points: {known})")
        points = [point]
    idx = args.connector
    if not 1 <= idx <= max(1, profile.connectors or 1):
        raise UsageError(f"--connector: {name} has connectors 1..{profile.connectors or 1}")
    return [((idx - 1) * profile.connector_id_stride,
             dataclasses.replace(p, address=p.address + (idx - 1) * profile.connector_stride))
            if p.per_connector else (0, p) for p in points]  # fmt: skip
