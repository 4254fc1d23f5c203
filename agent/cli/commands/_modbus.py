"""Options shared by `sems read`, `write` and `scan`: which Modbus line and unit, and how
register values are typed. The Modbus work itself is the drivers package's (transport and
codec): no second codec here."""

from __future__ import annotations

import argparse
from typing import Any

TYPE_LENGTHS = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "float64": 4}
TYPES = (*TYPE_LENGTHS, "string")


def add_target_arguments(parser: argparse.ArgumentParser, *, unit: bool = True) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--device", metavar="NAME", help="a device configured in the agent's settings (--config)")
    where.add_argument("--tcp", metavar="HOST:PORT", help="ad hoc Modbus TCP endpoint")
    where.add_argument("--rtu", metavar="DEVICE", help="ad hoc Modbus RTU serial device, e.g. /dev/ttyUSB0")
    parser.add_argument("--baud", type=int, default=9600, help="RTU line speed (default 9600)")
    parser.add_argument("--parity", choices=("N", "E", "O"), default="N", help="RTU parity (default N)")
    parser.add_argument("--config", default="/etc/sems/agent.toml", help="agent settings, for --device")
    if unit:
        parser.add_argument("--unit", type=int, default=None, help="Modbus unit id (default 1, or the device's)")
    parser.add_argument("--timeout", type=float, default=1.0, help="per-request timeout, seconds (default 1)")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def add_type_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--type", choices=TYPES, default="uint16", help="value type (default uint16)")
    parser.add_argument("--length", type=int, default=None, help="registers per value (strings only)")
    parser.add_argument("--word-order", choices=("big", "little"), default="big",
                        help="multi-register values: big = high word first (default)")
    parser.add_argument("--byte-order", choices=("big", "little"), default="big",
                        help="bytes inside a register: big = Modbus standard (default)")
    parser.add_argument("--scale", type=float, default=1.0, help="engineering value = raw x scale")


def resolve_target(args: argparse.Namespace) -> tuple[str, int]:
    """(endpoint URL, unit id) from --device / --tcp / --rtu; UsageError on bad input."""
    from agent.cli import UsageError

    unit = getattr(args, "unit", None)
    if args.device:
        from agent.config import settings as agent_settings

        try:
            cfg = agent_settings.load(args.config)
        except agent_settings.ConfigError as exc:
            raise UsageError(f"--config: {exc.problems[0]}") from None
        dev = next((d for d in cfg.devices if d.name == args.device), None)
        if dev is None:
            names = ", ".join(d.name for d in cfg.devices) or "none"
            raise UsageError(f"--device: no device {args.device!r} in {args.config} (configured: {names})")
        endpoint = dev.endpoint
        if endpoint.startswith("rtu://") and "baudrate=" not in endpoint:
            endpoint += f"?baudrate={dev.baudrate}&parity={dev.parity}"
        return endpoint, dev.unit_id if unit is None else unit
    if args.tcp:
        host, sep, port = args.tcp.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise UsageError(f"--tcp: expected HOST:PORT, got {args.tcp!r}")
        endpoint = f"tcp://{host}:{port}"
    else:
        if args.baud <= 0:
            raise UsageError("--baud: must be positive")
        endpoint = f"rtu://{args.rtu}?baudrate={args.baud}&parity={args.parity}"
    unit = 1 if unit is None else unit
    if not 0 <= unit <= 247:
        raise UsageError("--unit: must be 0..247")
    return endpoint, unit


def make_point(args: argparse.Namespace, address: int, table: str = "holding") -> Any:
    """A drivers.profile.Point describing the value at `address` as the options say."""
    from agent.cli import UsageError
    from drivers.profile import Point

    if args.type == "string":
        if not args.length or args.length < 1:
            raise UsageError("--length: strings need --length N (registers, 2 characters each)")
        length = args.length
    else:
        length = TYPE_LENGTHS[args.type]
    if not 0 <= address <= 65535:
        raise UsageError(f"address: {address} is outside 0..65535")
    if args.scale == 0:
        raise UsageError("--scale: must not be 0")
    return Point(name=f"reg{address}", address=address, table=table, type=args.type, length=length,
                 scale=args.scale, word_order=args.word_order, byte_order=args.byte_order, access="rw")


def parse_address(text: str) -> int:
    """Decimal or 0x hex protocol address (0-based, as on the wire)."""
    from agent.cli import UsageError

    try:
        return int(text, 0)
    except ValueError:
        raise UsageError(f"address: {text!r} is not a number (decimal or 0x hex)") from None


def quiet_pymodbus() -> None:
    """pymodbus logs its own connection failures to stderr; the commands print one clear
    line instead, so its logger is silenced for these one-shot tools."""
    import logging

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL + 1)
