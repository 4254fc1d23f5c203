"""`sems run --config FILE`: the station daemon (what systemd starts)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default="/etc/sems/agent.toml",
        help="agent settings TOML (default /etc/sems/agent.toml); SEMS_* variables override it",
    )
    parser.add_argument("--json", action="store_true",
                        help="log one JSON object per line on stderr (time, level, logger, "
                             "message); stdout stays empty")


def run(args: argparse.Namespace) -> int:
    from agent.app.daemon import main

    return main(args.config, json_logs=args.json)
