"""What the savings ledger's midnight costs the control loop, with the battery's refill to price.

A 24 h recorder day in 5 s control cycles (the real controller through
tests/agent/cycle_helpers.Station, the real `LedgerRecorder`, an injected clock): base load
20-45 kW by the hour, a tariff of 96 prices (0.10-0.40 EUR/kWh) with a 10 EUR/kW demand
charge, an 80 kWh battery whose BMS reads 60 % until 18:00 and 50 % after, so the day ends
8 kWh short and its refill has to be priced (`savings.refill_cost`, two small LPs). Then:
- midnight: the `observe()` of the cycle crossing midnight (before: it solved the LPs);
- after: the cycles that follow at the daemon's 250 ms period (real sleeps, as the loop
  sleeps between cycles) until the day's message is out: their slowest `observe()` and
  how many cycles it took (0: out in the midnight cycle itself);
- day: the median `observe()` over the day's other cycles.
The LP's module (highspy) is loaded before the day, as the daemon's planner loads it at
start-up (the default); `--no-planner` leaves it unloaded, as in a daemon with
`planner.enabled = false`, where the first refill loads it (40-350 ms).

`--against DIR` runs the same day on another checkout (e.g. a worktree of main) in a child
process, alternating with this one, each `--runs` times: side by side in one run.

    python bench/ledger_midnight.py [--runs 3] [--against /tmp/refill-main] [--no-planner] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

STEP = 5.0
PERIOD_S = 0.25  # the daemon's control period: the sleep between the cycles after midnight
AFTER_MAX = 40  # cycles after midnight at most (10 s of the daemon's time)


def measure(root: str, planner: bool = True) -> dict[str, Any]:
    """One day on the checkout at `root` (its agent package and test helpers)."""
    sys.path[:0] = [root, os.path.join(root, "tests", "agent")]
    if planner:
        import allocator.planner  # noqa: F401 (as PlannerTask does at start-up)
    from cycle_helpers import Station, settings

    from agent.energy.ledger_recorder import LedgerRecorder
    from agent.model.clock import ManualClock
    from agent.model.snapshot import BatteryState
    from agent.store.signals import PriceSlot, Signals, Tariff

    day = datetime(2026, 6, 17, tzinfo=UTC)
    cfg = settings(station={"battery": {"inverter": "inv", "bms": "bms", "max_charge_kw": 40,
                                        "max_discharge_kw": 40, "capacity_kwh": 80}})
    st = Station(cfg=cfg, clock=ManualClock(wall=day), base_kw=30.0)
    signals = Signals(st.db)
    slot = timedelta(minutes=15)
    signals.set_tariff(Tariff(id="t", demand_charge_eur_kw=10.0, slots=[
        PriceSlot(start=day + k * slot, end=day + (k + 1) * slot,
                  import_eur_kwh=0.10 + 0.30 * ((k * 37) % 96) / 95, export_eur_kwh=0.02)
        for k in range(2 * 96)]))
    sent: list[dict] = []
    rec = LedgerRecorder(st.cfg, st.db, signals, None, lambda kind, p: sent.append(p))

    def cycle() -> float:
        hour = st.clock.now().hour
        st.base_kw = 20.0 + 25.0 * ((hour * 7) % 24) / 23
        soc = 60.0 if st.clock.now() < day + timedelta(hours=18) else 50.0
        st.battery = BatteryState(soc=soc, max_charge_kw=40.0, max_discharge_kw=40.0,
                                  power_kw=0.0)
        d = st.cycle(advance=STEP, follow=True)
        t0 = time.perf_counter()
        rec.observe(d)
        return (time.perf_counter() - t0) * 1000.0

    def days_out() -> int:
        return sum(1 for p in sent if p["period"] == "day")

    times = [cycle() for _ in range(round(24 * 3600 / STEP) - 1)]  # up to 23:59:55
    midnight = cycle()
    after: list[float] = []
    while days_out() == 0 and len(after) < AFTER_MAX:
        time.sleep(PERIOD_S)
        after.append(cycle())
    refill = next((p["refillEur"] for p in sent if p["period"] == "day"), None)
    return {"midnightMs": round(midnight, 2), "afterMaxMs": round(max(after, default=0.0), 2),
            "cyclesAfter": len(after), "dayMedianMs": round(statistics.median(times), 3),
            "refillEur": refill}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--against", help="another checkout to run side by side (child process)")
    ap.add_argument("--no-planner", action="store_true", help="the LP's module not preloaded")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # child: one day on this checkout
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, planner=not args.no_planner)))
        return 0
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trees = [("this", here)] + ([("against", os.path.abspath(args.against))]
                                if args.against else [])
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in trees}
    for _ in range(args.runs):
        for name, root in trees:
            cmd = [sys.executable, os.path.abspath(__file__), "--one", root]
            out = subprocess.run(cmd + (["--no-planner"] if args.no_planner else []),
                                 capture_output=True, text=True, check=True, cwd=root)
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    if args.json:
        print(json.dumps(runs))
        return 0
    for name, root in trees:
        print(f"{name} ({root})")
        for r in runs[name]:
            print(f"  midnight observe {r['midnightMs']:7.2f} ms | after: slowest "
                  f"{r['afterMaxMs']:6.2f} ms, day out after {r['cyclesAfter']} cycles | "
                  f"day median {r['dayMedianMs']:.3f} ms | refill {r['refillEur']} EUR")
        med = statistics.median(r["midnightMs"] for r in runs[name])
        print(f"  median midnight observe {med:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
