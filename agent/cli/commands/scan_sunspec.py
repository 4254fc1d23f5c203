"""`sems scan --sunspec HOST[:PORT]`: which SunSpec models a device offers, per unit id.

Installers need this before choosing a profile: a device offering only float models
(111-113, 211-214), only 124, or no 802 would otherwise surface as missing values. The
discovery itself is the drivers' (drivers/sunspec.py); names and lengths come from the
published model definitions.
"""

from __future__ import annotations

import argparse


def run_sunspec(args: argparse.Namespace) -> int:
    import asyncio
    import sys

    from agent.cli import UsageError
    from agent.cli.commands._modbus import quiet_pymodbus
    from agent.cli.commands._output import print_json, table
    from drivers.sunspec import chains_at_every_base
    from drivers.transport import Bus, TransportError

    host, sep, port = args.sunspec.rpartition(":")
    if not sep:
        host, port = args.sunspec, "502"
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UsageError(f"--sunspec: expected HOST or HOST:PORT, got {args.sunspec!r}")
    if not 0 <= args.first <= args.last <= 255:
        raise UsageError("--first/--last: need 0 <= first <= last <= 255")
    if args.timeout <= 0:
        raise UsageError("--timeout: must be positive")
    quiet_pymodbus()
    endpoint = f"tcp://{host}:{port}"

    async def scan() -> list[dict[str, object]]:
        bus = Bus(endpoint, connect_timeout_s=max(args.timeout, 1.0), timeouts_before_reconnect=10**6)
        rows: list[dict[str, object]] = []
        try:
            for n, unit in enumerate(range(args.first, args.last + 1), 1):
                try:
                    found = await chains_at_every_base(bus, unit, timeout_s=args.timeout)
                except TransportError as exc:
                    if exc.kind == "disconnected" and n == 1:
                        raise
                    continue  # silent id
                for base, chain in found.items():
                    if isinstance(chain, str):
                        rows.append({"unit": unit, "base": base, "error": chain})
                        continue
                    for m in chain:
                        rows.append({"unit": unit, "base": base, "model": m.id, "name": m.name,
                                     "address": m.address - 2, "length": m.length})
        finally:
            await bus.close()
        return rows

    try:
        rows = asyncio.run(scan())
    except TransportError as exc:
        print(f"sems scan: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print_json({"endpoint": endpoint, "scanned": [args.first, args.last], "models": rows})
    elif rows:
        print(table(["unit", "base", "model", "name", "address", "length"],
                    [[r["unit"], r["base"], r.get("model", "-"), r.get("name", r.get("error", "")),
                      r.get("address", "-"), r.get("length", "-")] for r in rows]))
    else:
        print(f"no SunSpec map on {endpoint} (unit ids {args.first}..{args.last})")
    return 0 if rows else 1
