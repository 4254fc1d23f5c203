"""`sems run --config FILE`: the station daemon (what systemd starts)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default="/etc/sems/agent.toml",
        help="agent settings TOML (default /etc/sems/agent.toml); SEMS_* variables override it",
    )


def run(args: argparse.Namespace) -> int:
    from agent.app.daemon import main

    return main(args.config)
