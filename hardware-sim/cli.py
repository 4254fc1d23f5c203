"""`sems-sim`: start a station's emulated devices on 127.0.0.1.

Prints exactly one JSON line on stdout when every server listens:
  {"ready": true, "stationId", "timeFactor", "control": "127.0.0.1:P", "endpoints": {...}}
then runs until SIGINT/SIGTERM or the control command "stop", and exits 0. Logs go to
stderr. A bad station file or option gives one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys

from .faults import FaultError
from .profile import ProfileError
from .station import StationError, StationSpec, load_station_file


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sems-sim",
        description="Emulated station devices (grid meter, BMS, inverter, chargers) as Modbus "
                    "servers on 127.0.0.1, with physics and fault injection.")
    p.add_argument("--station", required=True, metavar="FILE",
                   help="station description: JSON (Electra station or scenario day file) or "
                        "TOML (station at top level or under [station])")
    p.add_argument("--time-factor", type=float, default=1.0, metavar="F",
                   help="simulated seconds per real second (default 1.0 = real time)")
    p.add_argument("--no-rtu", action="store_true",
                   help="do not serve the meter and BMS as Modbus RTU on a pseudo-terminal")
    p.add_argument("--seed", type=int, default=0, help="seed for random EVs and garbage")
    p.add_argument("--base-port", type=int, default=0, metavar="P",
                   help="first TCP port (devices take P, P+1, ..., the control port comes "
                        "last); default: free ports chosen by the system")
    p.add_argument("--random-evs", type=float, default=0.0, metavar="N",
                   help="random EV arrivals per simulated hour, on free connectors")
    p.add_argument("--profile", action="append", default=[], metavar="DEVICE=PROFILE",
                   help="serve DEVICE (meter, bms, inverter or a charger id) with another "
                        "profile of config/profiles, e.g. CP1=alfen-ng9xx or "
                        "meter=sunspec-meter (repeatable)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logs on stderr")
    return p


def _profiles(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        device, sep, name = item.partition("=")
        if not sep or not device or not name:
            raise StationError(f"--profile: {item!r} is not DEVICE=PROFILE")
        out[device] = name
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        stream=sys.stderr, format="sems-sim: %(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # pymodbus logs every client timeout; not news for a simulator
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    try:
        if not args.time_factor > 0:
            raise StationError("--time-factor: must be > 0")
        if not 0 <= args.base_port <= 65000:
            raise StationError("--base-port: must be between 1 and 65000 (0: any free port)")
        if args.random_evs < 0:
            raise StationError("--random-evs: must be >= 0")
        args.profiles = _profiles(args.profile)
        spec = load_station_file(args.station)
        return asyncio.run(_serve(spec, args))
    except (StationError, ProfileError, FaultError, ValueError) as exc:
        print(f"sems-sim: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a port already taken, a pty that cannot be opened
        print(f"sems-sim: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


async def _serve(spec: StationSpec, args: argparse.Namespace) -> int:
    from .simulator import Simulator

    sim = Simulator(spec, time_factor=args.time_factor, rtu_meter=not args.no_rtu,
                    seed=args.seed, base_port=args.base_port,
                    random_evs_per_hour=args.random_evs, control=True, profiles=args.profiles)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, sim.stop_requested.set)
    async with sim:
        ready = {"ready": True, "stationId": spec.station_id, "timeFactor": args.time_factor,
                 "control": sim.control.address, "endpoints": sim.endpoints}
        print(json.dumps(ready), flush=True)
        await sim.stop_requested.wait()
    return 0
