"""`sems`: the technician's command line.

Each subcommand lives in its own module under `agent.cli.commands` with two functions,
`add_arguments(parser)` and `run(args) -> int`; modules are imported only when their
command runs, so `sems allocate` does not pay for the MQTT or Modbus stacks.
Exit codes: 0 ok, 1 failure, 2 invalid input or usage, 78 bad configuration (EX_CONFIG).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module under agent.cli.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "allocate": ("allocate", "share a station's power for a request (JSON file or -)"),
    "status": ("status", "grid, battery, PV, every connector and the uplink, live"),
    "devices": ("devices", "each device's link state, latency and errors"),
    "ocpp": ("ocpp", "OCPP chargers: `ocpp log CP_ID` shows a charge point's last messages"),
    "sessions": ("sessions", "active sessions (or --history) with limits and energy"),
    "outbox": ("outbox", "uplink connection and what waits in the outbox"),
    "read": ("read", "read raw Modbus registers (configured device or ad hoc)"),
    "write": ("write", "write raw Modbus registers (configured device or ad hoc)"),
    "scan": ("scan", "find the unit ids answering on an RS-485 bus"),
    "plan": ("plan", "the plan the agent follows now, or a whole-day plan for a day file"),
    "demo": ("demo", "run a simulated station with the agent and show it working"),
    "config": ("config", "check an agent settings file"),
    "run": ("run", "run the station agent daemon (systemd starts this)"),
    "replay": ("replay", "replay a station day file with the planner or uncontrolled"),
    "report": ("report", "plot a day from the ledger: grid, cap, EVs, PV, SoC, price (.png/.html)"),
}


class UsageError(Exception):
    """A user mistake: printed as one line on stderr, exit status 2, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sems", description="sems-edge station agent")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        _load(module).add_arguments(p)
    return parser


def _load(module: str):
    return importlib.import_module(f"agent.cli.commands.{module}")


def main(argv: list[str] | None = None) -> int:
    # Building the parser imports every command module's argument definitions; those
    # modules keep heavy imports inside run() so this stays fast.
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(_load(args._module).run(args) or 0)
    except UsageError as exc:
        print(f"sems {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130

