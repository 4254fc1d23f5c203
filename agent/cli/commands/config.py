"""`sems config check FILE [--probe] [--json]`: validate agent settings.

Prints "ok" or every problem with its key path: the same lines `sems run` refuses the file
with. `--probe` then reads every configured device once and says why one does not answer.
Exit codes: 0 ok, 78 the settings are wrong (EX_CONFIG), 69 a probed device did not answer.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

EX_CONFIG = 78
EX_UNAVAILABLE = 69


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    check = sub.add_parser("check", help="validate a settings file (with SEMS_* overrides)")
    check.add_argument("file", help="agent settings TOML, e.g. /etc/sems/agent.toml")
    check.add_argument("--probe", action="store_true",
                       help="also read every configured device once (Modbus) and say why one "
                            "does not answer")
    check.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    from agent.config import device_check
    from agent.config.settings import ConfigError, load, warnings

    result: dict[str, Any] = {"file": args.file, "ok": False, "problems": [], "warnings": []}
    try:
        settings = load(args.file)
    except ConfigError as exc:
        result["problems"] = exc.problems
        return _finish(args, result, EX_CONFIG)
    result["warnings"] = device_check.warnings(settings) + warnings(settings)
    status = 0
    if args.probe:
        from agent.cli.commands._probe import probe

        result["probe"] = probe(settings)
        if not all(p["ok"] for p in result["probe"]):
            status = EX_UNAVAILABLE
    result["ok"] = status == 0
    return _finish(args, result, status)


def _finish(args: argparse.Namespace, result: dict[str, Any], status: int) -> int:
    if args.json:
        from agent.cli.commands._output import print_json

        print_json(result)
        return status
    for line in result["problems"]:
        print(line, file=sys.stderr)
    for line in result["warnings"]:
        print(f"warning: {line}", file=sys.stderr)
    for p in result.get("probe", []):
        if p["ok"]:
            print(f"{p['device']}: answers ({p['endpoint']} unit {p['unit']}, {p['ms']:.0f} ms)")
        else:
            print(f"{p['device']}: {p['why']}; next: {p['next']}")
    if status == 0:
        print("ok")
    return status
