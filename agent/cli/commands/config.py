"""`sems config check FILE`: validate agent settings; "ok" (after any warnings on stderr) or
every problem, exit 78."""

from __future__ import annotations

import argparse
import sys

EX_CONFIG = 78


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    check = sub.add_parser("check", help="validate a settings file (with SEMS_* overrides)")
    check.add_argument("file", help="agent settings TOML, e.g. /etc/sems/agent.toml")


def run(args: argparse.Namespace) -> int:
    from agent.config.settings import ConfigError, load, warnings

    try:
        settings = load(args.file)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EX_CONFIG
    for warning in warnings(settings):
        print(f"warning: {warning}", file=sys.stderr)
    print("ok")
    return 0
