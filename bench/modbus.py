"""Modbus driver benchmark on loopback TCP against the hardware simulator.

    .venv/bin/python bench/modbus.py [--chargers 10] [--seconds 3] [--rounds 200] [--json]

The simulator (`sems-sim`) runs in a child process so its servers do not share the
benchmark's event loop. Figures:
  * single device: sequential whole-device reads of the grid meter (one 30-register request
    each): requests per second and latency p50/p99;
  * station: all devices (meter, BMS, inverter, N chargers, one TCP connection each) read
    concurrently, as the agent's read phase does, repeated `rounds` times: time per whole-
    station read p50/p99/max (target <= 25 ms for 10 chargers) and requests per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

# Run as a script, bench/ comes first on sys.path and bench/allocator.py would shadow the
# `allocator` package: drop that folder (bench/run_all.py also runs each with `python -P`).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import drivers  # noqa: E402
from bench.simproc import simulator  # noqa: E402

TARGET_MS = 25.0


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def station(chargers: int) -> dict[str, Any]:
    return {
        "stationId": "bench", "gridCapacity": 400, "pvPeak": 50,
        "battery": {"capacity": 200, "maxChargePower": 100, "maxDischargePower": 100},
        "chargers": [{"id": f"c{i + 1}", "maxPower": 22, "connectors": 2} for i in range(chargers)],
    }


def make_devices(ep: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    devs: dict[str, Any] = {}
    for name, kind in (("meter", "meter"), ("bms", "battery"), ("inverter", "inverter")):
        e = ep[name]
        devs[name] = drivers.make_device(kind, f"tcp://{e['tcp']}", e["unit"], e["profile"], timeout_s=timeout_s)
    for cid, e in ep["chargers"].items():
        devs[cid] = drivers.make_device("charger", f"tcp://{e['tcp']}", e["unit"], e["profile"],
                                        timeout_s=timeout_s, connectors=e["connectors"])
    return devs


async def measure(ep: dict[str, Any], seconds: float, rounds: int) -> dict[str, Any]:
    devs = make_devices(ep, timeout_s=0.5)
    await asyncio.gather(*(d.read() for d in devs.values()))  # connect, discover, plan

    meter = devs["meter"]
    lat: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        await meter.read()
        lat.append((time.perf_counter() - t0) * 1000)
    single = {"requests": len(lat), "rps": len(lat) / seconds,
              "p50_ms": percentile(lat, 0.5), "p99_ms": percentile(lat, 0.99)}

    requests_before = sum(d.bus.requests for d in devs.values())
    station: list[float] = []
    t_start = time.perf_counter()
    for _ in range(rounds):
        t0 = time.perf_counter()
        await asyncio.gather(*(d.read() for d in devs.values()))
        station.append((time.perf_counter() - t0) * 1000)
    elapsed = time.perf_counter() - t_start
    requests = sum(d.bus.requests for d in devs.values()) - requests_before
    per_read = requests / rounds
    for d in devs.values():
        await d.bus.close()
    return {
        "single_device": single,
        "station": {"devices": len(devs), "requests_per_read": per_read, "rounds": rounds,
                    "p50_ms": percentile(station, 0.5), "p99_ms": percentile(station, 0.99),
                    "max_ms": max(station), "rps": requests / elapsed,
                    "target_ms": TARGET_MS, "meets_target": percentile(station, 0.99) <= TARGET_MS},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chargers", type=int, default=10)
    p.add_argument("--seconds", type=float, default=3.0, help="duration of the single-device run")
    p.add_argument("--rounds", type=int, default=200, help="whole-station reads to time")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if args.chargers < 1 or args.seconds <= 0 or args.rounds < 1:
        p.error("--chargers, --seconds and --rounds must be positive")
    with simulator(station(args.chargers)) as ready:
        result = asyncio.run(measure(ready["endpoints"], args.seconds, args.rounds))
    result["chargers"] = args.chargers
    if args.json:
        print(json.dumps(result))
        return 0
    s, st = result["single_device"], result["station"]
    print(f"{'measure':<44} {'value':>12}")
    print(f"{'single device: requests/s':<44} {s['rps']:>12.0f}")
    print(f"{'single device: latency p50 (ms)':<44} {s['p50_ms']:>12.3f}")
    print(f"{'single device: latency p99 (ms)':<44} {s['p99_ms']:>12.3f}")
    print(f"{'station: devices / requests per read':<44} {st['devices']:>6} / {st['requests_per_read']:>3.0f}")
    print(f"{'station read, ' + str(args.chargers) + ' chargers: p50 (ms)':<44} {st['p50_ms']:>12.2f}")
    print(f"{'station read: p99 (ms)':<44} {st['p99_ms']:>12.2f}")
    print(f"{'station read: max (ms)':<44} {st['max_ms']:>12.2f}")
    print(f"{'station reads: requests/s':<44} {st['rps']:>12.0f}")
    print(f"{'target p99 <= 25 ms':<44} {'met' if st['meets_target'] else 'NOT met':>12}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
