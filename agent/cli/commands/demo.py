"""`sems demo`: a simulated station with the agent controlling it, shown live.

Starts `sems-sim` on a scenario day (accelerated, so EVs arrive within the minute), a
private Mosquitto when installed, and `sems run` against the simulator; shows grid, PV,
battery and every connector's limit, power and binding limit about once a second.
`--seconds N --json` runs headless and prints one JSON summary. Ctrl-C or SIGTERM stops
every child process and prints the summary. `--as-is` plays a day file as it is (no staged
rush or cut), from midnight, e.g. a whole day at 360x. See agent/demo/.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenario", type=Path, metavar="FILE",
                        help="scenario day (or station) JSON; default: the reference day "
                             "shipped in hardware-sim/scenarios/reference-day.json")
    parser.add_argument("--time-factor", type=float, default=60.0, metavar="F",
                        help="simulated seconds per real second, 1..360 (default 60)")
    parser.add_argument("--seconds", type=float, metavar="N",
                        help="stop after N seconds of the agent running (default: until Ctrl-C)")
    parser.add_argument("--json", action="store_true",
                        help="no live table; print one JSON summary at the end")
    parser.add_argument("--no-broker", action="store_true",
                        help="do not start a private Mosquitto (no uplink)")
    parser.add_argument("--as-is", action="store_true",
                        help="play the scenario's day as it is, from its start: no staged "
                             "rush of fast EVs and no grid cut (e.g. a whole day: "
                             "--time-factor 360 --seconds 240)")
    parser.add_argument("--profile", action="append", default=[], metavar="DEVICE=PROFILE",
                        help="serve DEVICE with another register map of config/profiles, as "
                             "sems-sim --profile (repeatable), e.g. CP1=sim-charger-ac")


def run(args: argparse.Namespace) -> int:
    from agent.cli import UsageError
    from agent.demo.runner import DemoOptions, run_demo
    from agent.demo.scenario import ScenarioError, default_scenario, load_scenario

    if not 1 <= args.time_factor <= 360:
        raise UsageError(f"--time-factor: must be between 1 and 360, got {args.time_factor:g}")
    if args.seconds is not None and not 0 < args.seconds <= 86400:
        raise UsageError(f"--seconds: must be between 0 and 86400, got {args.seconds:g}")
    scenario = args.scenario or default_scenario()
    try:
        load_scenario(scenario)  # refuse a bad file before anything starts
    except ScenarioError as exc:
        raise UsageError(str(exc)) from None
    return run_demo(DemoOptions(scenario, args.time_factor, args.seconds, args.json,
                                broker=not args.no_broker, staged=not args.as_is,
                                profiles=tuple(args.profile)))
