"""`sems demo` (interim, until the live simulated station exists): the allocator at work.

Allocates Electra's README example and a generated larger station (10 chargers, 20 sessions,
battery and PV) and prints each as a table (or JSON with --json). With --seconds N it then
replays N seconds of 250 ms control cycles on the larger station through the pre-allocated
kernel arrays, with PV and vehicle demand drifting, and reports the final cycle and timing.
"""

from __future__ import annotations

import argparse
from typing import Any

CYCLE_S = 0.25

ELECTRA = {
    "stationId": "ELECTRA_README",
    "gridCapacity": 330,
    "chargers": [{"id": "CP1", "maxPower": 200, "connectors": 2},
                 {"id": "CP2", "maxPower": 200, "connectors": 2}],
    "sessions": [
        {"sessionId": "ev-1", "connectorId": {"chargerId": "CP1", "idx": 1}, "vehicleMaxPower": 80},
        {"sessionId": "ev-2", "connectorId": {"chargerId": "CP1", "idx": 2}, "vehicleMaxPower": 150},
        {"sessionId": "ev-3", "connectorId": {"chargerId": "CP2", "idx": 1}, "vehicleMaxPower": 150},
    ],
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=0.0, metavar="N",
                        help="also replay N seconds of 250 ms control cycles (default 0)")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated station")


def generated_station(seed: int) -> dict[str, Any]:
    """10 chargers (DC 150/50 kW and AC 22 kW, 2 connectors each), 20 sessions, battery, PV."""
    import random

    rnd = random.Random(seed)
    kinds = [(150.0, (50.0, 100.0, 150.0, 250.0)), (50.0, (40.0, 50.0)), (22.0, (7.4, 11.0, 22.0))]
    chargers: list[dict[str, Any]] = []
    sessions: list[dict[str, Any]] = []
    for j in range(10):
        max_power, vehicles = kinds[j % 3]
        chargers.append({"id": f"CP{j + 1:02d}", "maxPower": max_power, "connectors": 2})
        for idx in (1, 2):
            session: dict[str, Any] = {
                "sessionId": f"ev-{len(sessions) + 1:02d}",
                "connectorId": {"chargerId": f"CP{j + 1:02d}", "idx": idx},
                "vehicleMaxPower": rnd.choice(vehicles),
                "minPower": 4.1 if max_power == 22.0 else 0.0,
                "priority": rnd.choice((0, 0, 0, 1)),
            }
            if rnd.random() < 0.2:  # measured below its allocation: capped near what it draws
                session["powerCap"] = round(session["vehicleMaxPower"] * rnd.uniform(0.3, 0.8), 1)
            sessions.append(session)
    return {"stationId": f"GENERATED_{seed}", "gridCapacity": 400.0, "baseLoad": 35.0,
            "pvPower": 60.0,
            "battery": {"maxDischargePower": 100.0, "maxChargePower": 100.0, "soc": 64.0,
                        "minSoc": 10.0},
            "chargers": chargers, "sessions": sessions}


def replay(station: dict[str, Any], seconds: float, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the kernel every simulated 250 ms cycle, as the control loop does (arrays filled in
    place, no allocation); returns the last cycle as a request and the kernel's result."""
    import math
    import random
    import time

    from allocator import kernel
    from allocator.arrays import StationArrays
    from allocator.request import load_into, parse_request, result_dict

    rnd = random.Random(seed)
    req = parse_request(station)
    arrays = StationArrays(len(req.chargers), len(req.sessions))
    load_into(req, arrays)
    base_vmax = arrays.vehicle_max[: arrays.n_sessions].copy()
    cycles = max(1, int(seconds / CYCLE_S))
    spent = 0.0
    current = dict(station)
    for k in range(cycles):
        t = k * CYCLE_S  # simulated time: no sleeping, the demo runs as fast as it can
        pv = round(max(0.0, station["pvPower"] * (1 + 0.5 * math.sin(t / 30.0))), 2)
        arrays.station[kernel.PV_POWER] = pv
        for i in range(arrays.n_sessions):  # vehicles taper their demand a little each cycle
            arrays.vehicle_max[i] = round(base_vmax[i] * (0.9 + 0.1 * rnd.random()), 2)
        start = time.perf_counter()
        arrays.solve()
        spent += time.perf_counter() - start
        current = dict(station, pvPower=pv, sessions=[
            dict(s, vehicleMaxPower=float(arrays.vehicle_max[i]))
            for i, s in enumerate(station["sessions"])])
    n = arrays.n_sessions
    result = result_dict(req, arrays.allocation[:n].tolist(), arrays.binding_names(),
                         arrays.battery_power, arrays.grid_power)
    summary = {"cycles": cycles, "simulated_s": cycles * CYCLE_S,
               "mean_solve_us": round(spent / cycles * 1e6, 2)}
    return current, {"result": result, "summary": summary}


def run(args: argparse.Namespace) -> int:
    import json

    from agent.cli import UsageError
    from agent.commands.allocate import render_table
    from allocator import allocate

    if not args.seconds >= 0 or args.seconds > 86400:
        raise UsageError(f"--seconds: must be between 0 and 86400, got {args.seconds}")
    stations = [ELECTRA, generated_station(args.seed)]
    results = [allocate(s) for s in stations]
    live = replay(stations[1], args.seconds, args.seed) if args.seconds > 0 else None

    if args.json:
        out: dict[str, Any] = {"stations": [{"request": s, "result": r}
                                            for s, r in zip(stations, results, strict=True)]}
        if live:
            out["replay"] = {"request": live[0], **live[1]}
        print(json.dumps(out, indent=2))
        return 0
    print("\n\n".join(render_table(s, r) for s, r in zip(stations, results, strict=True)))
    if live:
        summary = live[1]["summary"]
        print(f"\nafter {summary['simulated_s']:g} s of 250 ms cycles ({summary['cycles']} cycles, "
              f"{summary['mean_solve_us']} us per solve):")
        print(render_table(live[0], live[1]["result"]))
    return 0
