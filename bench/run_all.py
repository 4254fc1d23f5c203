"""`make bench`: run every benchmark with --json and write docs/performance.md.

Each benchmark runs in its own interpreter with `python -P` (the script's folder is not put
first on sys.path, so bench/allocator.py cannot shadow the `allocator` package), one after
the other so they do not compete for the cores. Sizes are chosen to keep the whole run
under ~10 minutes; the document says which. The figures are this machine's; beside them the
document sets the cadences that OpenEMS Edge, EVerest's energy manager and evcc publish
(their defaults, with sources), so every comparison is a ratio computed from one run.

    .venv/bin/python bench/run_all.py [--only NAME ...] [--out docs/performance.md]
                                      [--raw FILE] [--from-raw FILE]

--raw keeps the benchmarks' JSON; --from-raw renders the document again from such a file
without re-running anything (for editing the text), or, with --only, re-runs just those.
A benchmark that fails is run once more (a busy machine can push a solver past its time
limit); the document then says so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Bench:
    name: str
    script: str
    args: tuple[str, ...]  # beyond --json: the sizes used by make bench
    timeout_s: float
    note: str  # how the sizes differ from the script's defaults, for the document


BENCHES: tuple[Bench, ...] = (
    Bench("allocator", "bench/allocator.py", (), 300, "default sizes (8 to 4096 sessions)"),
    Bench("modbus", "bench/modbus.py", ("--chargers", "10", "--seconds", "3", "--rounds", "200"),
          180, "defaults: 10 chargers, 3 s single-device run, 200 station reads"),
    Bench("loop", "bench/loop.py", ("--seconds", "10"), 400,
          "defaults: 10 s steady state per case, 2/10/40 chargers"),
    Bench("loop-scale", "bench/loop.py", ("--scale", "--seconds", "10"), 600,
          "a depot: 10, 50 and 100 chargers at 4 Hz and 250 at 1 Hz, 10 s each"),
    Bench("uplink", "bench/uplink.py", ("--count", "50000", "--windows", "1,20,100"), 400,
          "defaults: 50,000 buffered messages per window, windows 1, 20 and 100"),
    Bench("savings", "bench/savings.py", (), 600,
          "the reference day, every variant (also gives the planner's solve times)"),
    Bench("ocpp", "bench/ocpp.py", ("--seconds", "10"), 600,
          "defaults: 10, 50 and 100 OCPP 1.6J charge points, 10 s steady state each"),
    # 100 only (the target's size) and 20 s (80 cycles, so p99 is not simply the maximum):
    # about 30 s added to the whole run.
    Bench("ocpp-burst", "bench/ocpp.py", ("--burst", "--sizes", "100", "--seconds", "20"), 300,
          "100 OCPP 1.6J charge points only (the target's size), base load stepping every 1 s, "
          "20 s of bursts"),
    # 2 repetitions of 1.6J only: 4 station set-ups, about 5 minutes (the script's default,
    # 3 of both versions, is the figure docs/ocpp.md quotes).
    Bench("ocpp-trigger", "bench/ocpp_trigger.py", ("--runs", "2", "--versions", "1.6"), 900,
          "2 repetitions, OCPP 1.6J only: triggers answered and refused, one EV's 25 s pause each"),
)  # fmt: skip


def machine() -> dict[str, Any]:
    """Where the figures come from: date, cores, CPU model, load."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    mem_gb = None
    try:
        with open("/proc/meminfo") as f:
            kb = next(int(ln.split()[1]) for ln in f if ln.startswith("MemTotal"))
            mem_gb = round(kb / 2**20, 1)
    except (OSError, StopIteration, ValueError):
        pass
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": model or platform.processor() or "unknown",
        "memGb": mem_gb,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadBefore": [round(x, 2) for x in os.getloadavg()],
    }


def run_one(bench: Bench) -> dict[str, Any]:
    """One benchmark in a fresh interpreter; its JSON, or the reason it has none."""
    cmd = [sys.executable, "-P", str(ROOT / bench.script), "--json", *bench.args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba-cache"))
    print(f"bench: {bench.name}: {' '.join(cmd[2:])}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env,
                              timeout=bench.timeout_s)  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {bench.timeout_s:.0f} s", "wallS": bench.timeout_s}
    wall = round(time.perf_counter() - t0, 1)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {done.returncode}: {last}", "wallS": wall}
    try:
        # The object is the last thing printed (uplink indents it over several lines).
        result = json.loads(done.stdout[done.stdout.index("{"):])
    except ValueError:
        return {"error": "no JSON object in its output", "wallS": wall}
    print(f"bench: {bench.name}: {wall} s", file=sys.stderr, flush=True)
    return {"result": result, "wallS": wall}


# --- the document ---------------------------------------------------------------------------

# The published cadences the figures are set beside (their defaults), with where they come from.
PEERS: tuple[tuple[str, float, str, str], ...] = (
    # (name, control period in s, what is re-decided each period, source)
    ("OpenEMS Edge", 1.0, "every controller, on one process image per cycle",
     "`Cycle.DEFAULT_CYCLE_TIME = 1000` ms, the default of the Core.Cycle component's "
     "\"Cycle-Time\" (OpenEMS/openems, `io.openems.edge.common/src/io/openems/edge/common/"
     "cycle/Cycle.java`)"),
    ("EVerest EnergyManager", 1.0, "the whole energy tree, every update",
     "config `update_interval`, \"Update interval for energy distribution [s]\", default 1 "
     "(EVerest/everest-core, `modules/EnergyManager/manifest.yaml`)"),
    ("evcc", 30.0, "one loadpoint per tick, in turn",
     "`interval: 30s` in the reference configuration, shorter intervals discouraged "
     "(https://docs.evcc.io/en/reference/configuration/interval); `Site.Run` updates the next "
     "loadpoint on each tick, `site.update(<-loadpointChan)` (evcc-io/evcc, `core/site.go`)"),
)  # fmt: skip
EVCC_CHARGERS = 10  # evcc's round robin: a station change reaches loadpoint N after N ticks


def _f(x: float | None, digits: int = 1) -> str:
    if x is None:
        return "-"
    if x != 0 and abs(x) < 10 ** -digits:
        return f"{x:.2g}"
    return f"{x:,.{digits}f}"


def _pct(part: float, whole: float) -> str:
    share = 100.0 * part / whole
    return f"{share:.2g} %" if share < 1 else f"{share:.1f} %"


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _table(head: list[str], rows: list[list[Any]], align: str = "") -> list[str]:
    align = align or "l" + "r" * (len(head) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    out = ["| " + " | ".join(head) + " |", "| " + " | ".join(sep) + " |"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out + [""]


def _beside(rows: list[tuple[str, str, list[str]]]) -> list[str]:
    """A small table: one measured figure and what it means beside each peer's cadence."""
    head = ["", "sems-edge (measured)", *(p[0] for p in PEERS)]
    return _table(head, [[label, ours, *peers] for label, ours, peers in rows],
                  "l" + "r" * (len(head) - 1))  # fmt: skip


def _of_periods(seconds: float, unit: str = "{period:g} s") -> list[str]:
    """`seconds` as a share of each peer's period, e.g. "1.2 % of 1 s"."""
    return [f"{_pct(seconds, p[1])} of {unit.format(period=p[1])}" for p in PEERS]


def _section(title: str, name: str, bench: dict[str, Any] | None) -> tuple[list[str], Any]:
    """A section's heading and the benchmark's result, or (heading + why there is none, None)."""
    out = [f"## {title}", ""]
    if bench is None:
        return out + ["_Not run this time (`bench/run_all.py --only` left it out)._", ""], None
    if "error" in bench:
        return out + [f"**The {name} benchmark failed**: {bench['error']}", ""], None
    return out, bench["result"]


def _loop_row(loop: dict[str, Any], chargers: int, period_ms: float) -> dict[str, Any] | None:
    return next((r for r in loop["rows"]
                 if r["chargers"] == chargers and r["period_ms"] == period_ms), None)  # fmt: skip


def _summary(b: dict[str, Any]) -> list[str]:
    out = ["## At a glance", ""]
    loop = b.get("loop", {}).get("result")
    row = _loop_row(loop, 10, 250.0) if loop else None
    cycle_s = row["cycle_ms"]["p99"] / 1000 if row else None
    period = 0.25
    react = period + (cycle_s or 0.0)
    peers_react = [p[1] if p[2].startswith(("every", "the whole")) else p[1] * EVCC_CHARGERS
                   for p in PEERS]  # fmt: skip
    out += _table(
        ["", "sems-edge", *(p[0] for p in PEERS)],
        [
            ["control period (default)", "250 ms (100 ms to 1 s)", *(f"{p[1]:g} s" for p in PEERS)],
            ["re-decided each period", "every connector and the battery", *(p[2] for p in PEERS)],
            [f"decisions per charger per second ({EVCC_CHARGERS} chargers)", f"{1 / period:g}",
             *(f"{1 / r:.2g}" for r in peers_react)],
            [f"worst case until every charger of {EVCC_CHARGERS} has reacted to a grid change",
             f"{react * 1000:.0f} ms" + (" (period + cycle p99)" if row else " (period)"),
             *(f"{r:g} s" for r in peers_react)],
            ["... relative to sems-edge", "1x", *(f"{r / react:.0f}x" for r in peers_react)],
        ],
        "lllll",
    )  # fmt: skip
    out += [
        "The peers' figures are their published defaults (a station can configure them "
        "otherwise) and leave out their own processing time, which favours them. evcc also "
        "updates a loadpoint at once on that loadpoint's own events, such as a plug-in, but a "
        "change of the shared grid budget reaches the others one tick at a time. Sources:",
        "",
    ]
    out += [f"- {name}: {period:g} s, {src}." for name, period, _, src in PEERS]
    return out + [""]


def _allocator(bench: dict[str, Any] | None) -> list[str]:
    out, r = _section("Allocator (`bench/allocator.py`)", "allocator", bench)
    if r is None:
        return out
    out += [
        "Median microseconds per call on one core; sessions spread 4 per charger, mixed DC/AC "
        "vehicles with caps, minimums, battery and PV. `kernel`: `StationArrays.solve()` on "
        "filled arrays, what the control loop pays each cycle; `api`: `allocate(dict)` with "
        "validation and conversion; `reference`: the plain-Python specification. The three are "
        "timed side by side in one process, so the ratio holds even when the machine is busy.",
        "",
    ]
    out += _table(["sessions", "kernel us", "api us", "reference us", "reference / kernel"],
                  [[x["sessions"], _f(x["kernel_us"], 2), _f(x["api_us"], 0),
                    _f(x["reference_us"], 0), f"{x['ratio']:.0f}x"] for x in r["rows"]])  # fmt: skip
    by = {x["sessions"]: x for x in r["rows"]}
    checks = []
    if 8 in by:
        checks.append(f"kernel <= 2 us at 8 sessions: {_met(by[8]['kernel_us'] <= 2)}")
    if 1024 in by:
        checks.append(f"<= 20 us at 1024: {_met(by[1024]['kernel_us'] <= 20)}")
        checks.append(f">= 50x the reference at 1024: {_met(by[1024]['ratio'] >= 50)}")
    out += [f"Targets: {'; '.join(checks)}. First call in a fresh process: "
            f"{r['cold_start_ms'] / 1000:.1f} s with an empty numba cache (compilation), "
            f"{r['cached_start_ms']:.0f} ms with a warm `NUMBA_CACHE_DIR`.", ""]  # fmt: skip
    trees = r.get("trees") or []
    if trees:
        out += ["Under an electrical tree (`tree_kernel.py`; circuits with per-phase fuses, 22 kW / "
                "32 A chargers with rotated phases, DC chargers, 1/2/3-phase EVs, fuses at 60 % of "
                "what the chargers below could draw):", ""]
        out += _table(["sessions", "circuits", "kernel us", "reference us", "reference / kernel"],
                      [[x["sessions"], x["circuits"], _f(x["kernel_us"], 2), _f(x["reference_us"], 0),
                        f"{x['ratio']:.0f}x"] for x in trees])  # fmt: skip
        tby = {x["sessions"]: x for x in trees}
        tchecks = []
        if 8 in tby:
            tchecks.append(f"<= 5 us at 8 sessions: {_met(tby[8]['kernel_us'] <= 5)}")
        if 1024 in tby:
            tchecks.append(f"<= 60 us at 1024: {_met(tby[1024]['kernel_us'] <= 60)}")
        out += [f"Targets: {'; '.join(tchecks)}.", ""]
    big = by.get(1024) or r["rows"][-1]
    us = big["kernel_us"]
    out += [f"Beside the peers' periods, one allocation of {big['sessions']} sessions:", ""]
    out += _beside([(f"kernel, {big['sessions']} sessions", f"{_f(us, 1)} us",
                     _of_periods(us / 1e6, "a {period:g} s period"))])
    return out


def _modbus(bench: dict[str, Any] | None) -> list[str]:
    out, r = _section("Modbus (`bench/modbus.py`)", "Modbus", bench)
    if r is None:
        return out
    s, st = r["single_device"], r["station"]
    out += [
        "Loopback TCP against the hardware simulator (`sems-sim`, a child process). Single "
        "device: back-to-back whole-device reads of the grid meter (one request each). "
        f"Station: all {st['devices']} devices (meter, BMS, inverter, {r['chargers']} chargers, "
        "one connection each) read concurrently as the agent's read phase does, "
        f"{st['rounds']} times.",
        "",
    ]
    out += _table(["measure", "value"], [
        ["single device: requests/s", _f(s["rps"], 0)],
        ["single device: latency p50 / p99", f"{s['p50_ms']:.2f} / {s['p99_ms']:.2f} ms"],
        ["station read: requests per read", _f(st["requests_per_read"], 0)],
        ["station read: p50 / p99 / max",
         f"{st['p50_ms']:.2f} / {st['p99_ms']:.2f} / {st['max_ms']:.2f} ms"],
        ["station reads: requests/s", _f(st["rps"], 0)],
        [f"target: station read p99 <= {st['target_ms']:g} ms", _met(st["meets_target"])],
    ], "lr")  # fmt: skip
    p99 = st["p99_ms"] / 1000
    out += ["Loopback leaves out the wire: on RS-485 at 9600 baud one 30-register request and "
            "its answer take about 90 ms, which is what the per-device deadlines inside the "
            "period and the shared-bus lock are for.", ""]
    out += _beside([(f"whole-station read p99 ({r['chargers']} chargers)",
                     f"{st['p99_ms']:.1f} ms ({_pct(p99, 0.25)} of 250 ms)",
                     _of_periods(p99))])  # fmt: skip
    return out


def _loop_scale(bench: dict[str, Any] | None) -> list[str]:
    out, r = _section("Control loop at depot scale (`bench/loop.py --scale`)", "loop-scale", bench)
    if r is None:
        return out
    out += [
        "The same loop at a depot's sizes (issue 11): one simulator process serves every "
        "charger, each on its own loopback port and unit id, one EV per charger. RSS: `sems "
        "run` on the same station at 4 Hz, steady (last sample of 10 s) and peak (VmHWM).",
        "",
    ]
    rows = []
    for x in r["scale"]:
        c, d = x["cycle_ms"], x.get("daemon") or {}
        rows.append([x["chargers"], f"{x['period_ms']:.0f} ms", x["cycles"], _f(c["p50"], 1),
                     _f(c["p99"], 1), _f(c["max"], 1), x["overruns"],
                     f"{100 * x['cpu_share']:.1f} %", _f(d.get("rss_mb"), 0),
                     _f(d.get("hwm_mb"), 0)])  # fmt: skip
    out += _table(["chargers", "period", "cycles", "p50 ms", "p99 ms", "max ms", "overruns",
                   "CPU", "RSS MB", "peak MB"], rows)  # fmt: skip
    by = {(x["chargers"], x["period_ms"]): x for x in r["scale"]}
    checks = []
    depot = by.get((100, 250.0))
    if depot:
        ok = depot["cycle_ms"]["p99"] <= 40 and depot["overruns"] == 0
        checks.append(f"100 chargers at 4 Hz, p99 <= 40 ms and no overruns: {_met(ok)}")
    big = by.get((250, 1000.0))
    if big:
        checks.append(f"250 chargers at 1 Hz without overruns: {_met(big['overruns'] == 0)}")
    mem = [x["daemon"] for x in r["scale"] if x.get("daemon", {}).get("rss_mb") is not None]
    if mem:
        ok = all(m["rss_mb"] <= 150 and m["hwm_mb"] <= 200 for m in mem)
        checks.append(f"RSS <= 150 MB steady and <= 200 MB peak: {_met(ok)}")
    return out + ["Targets: " + "; ".join(checks) + ".", ""]


def _loop(bench: dict[str, Any] | None) -> list[str]:
    out, r = _section("Control loop (`bench/loop.py`)", "control-loop", bench)
    if r is None:
        return out
    out += [
        "The loop as the daemon assembles it (planner and savings ledger included) against the "
        "simulator over loopback, one EV per charger (2 connectors each). Cycle = read every "
        "device, decide, write, record. CPU is the loop's share of one core. At 250 ms a 10 s "
        "run has 40 cycles, so p99 is close to the maximum.",
        "",
    ]
    rows = []
    for x in r["rows"]:
        c = x["cycle_ms"]
        rows.append([x["chargers"], f"{x['period_ms']:.0f} ms", x["cycles"], _f(c["p50"], 1),
                     _f(c["p99"], 1), _f(c["max"], 1), x["overruns"],
                     f"{100 * x['cpu_share']:.1f} %", f"{x['first_cycle_s']:.2f} s"])  # fmt: skip
    out += _table(["chargers", "period", "cycles", "p50 ms", "p99 ms", "max ms", "overruns",
                   "CPU", "first cycle"], rows)  # fmt: skip
    d = r.get("daemon") or {}
    ten = _loop_row(r, 10, 250.0)
    fast = _loop_row(r, 10, 100.0)
    checks = []
    if ten:
        checks.append(f"p99 <= 40 ms for 10 chargers at 250 ms: {_met(ten['cycle_ms']['p99'] <= 40)}")
    if fast:
        checks.append(f"100 ms with no overruns: {_met(fast['overruns'] == 0)}")
    if d.get("rss_mb") is not None:
        checks.append(f"daemon RSS <= 150 MB: {_met(d['rss_mb'] <= 150)} ({d['rss_mb']:.0f} MB, "
                      f"peak {d['hwm_mb']:.0f} MB: `sems run`, 10 chargers, 4 Hz)")
    firsts = [x["first_cycle_s"] for x in r["rows"]]
    checks.append(f"first cycle within 2 s: {_met(max(firsts) <= 2)}")
    out += ["Targets: " + "; ".join(checks) + ".", ""]
    if ten:
        p99 = ten["cycle_ms"]["p99"] / 1000
        out += _beside([
            ("cycle p99, 10 chargers", f"{ten['cycle_ms']['p99']:.1f} ms",
             _of_periods(p99)),
            ("decisions per charger per minute", f"{60 / 0.25:.0f} (600 at 100 ms)",
             [f"{60 / p[1]:.0f}" if i < 2 else f"{60 / (p[1] * EVCC_CHARGERS):.1f} "
              f"({EVCC_CHARGERS} loadpoints)" for i, p in enumerate(PEERS)]),
        ])  # fmt: skip
    return out


def _uplink(bench: dict[str, Any] | None) -> list[str]:
    out, r = _section("Uplink (`bench/uplink.py`)", "uplink", bench)
    if r is None:
        return out
    out += [
        "Against a real Mosquitto on loopback. Drain: messages buffered in the SQLite outbox "
        "while offline, then published at QoS 1 with a window of publishes in flight, each row "
        "deleted only after its PUBACK. Latency: commit to PUBACK at a steady 100 msg/s.",
        "",
    ]
    out += _table(["window", "messages", "seconds", "msg/s", "SQLite B/msg", "payload B/msg"],
                  [[x["window"], _f(x["messages"], 0), f"{x['seconds']:.2f}", _f(x["msgPerS"], 0),
                    x["fileBytesPerMsg"], x["payloadBytesPerMsg"]] for x in r["drain"]])  # fmt: skip
    lat, cap = r["latency"], r["capacity"]
    best = max(x["msgPerS"] for x in r["drain"])
    out += [
        f"Commit -> PUBACK at 100 msg/s: p50 {lat['p50Ms']} ms, p99 {lat['p99Ms']} ms "
        f"({lat['messages']} messages). Drain target >= 5,000 msg/s: {_met(best >= 5000)}. "
        f"The default outbox cap ({cap['maxRows']:,} rows, {cap['maxBytes'] // 2**20} MiB of "
        f"payload) holds {cap['days']} days of 10 s telemetry, about {cap['daysWithThinning']:.0f} "
        "days once old telemetry is thinned to 1 in 8.",
        "",
        "None of the three peers publishes a store-and-forward figure; beside their cadences, a "
        "message reaches the broker, and a day's backlog clears, within a fraction of one of "
        "their periods:",
        "",
    ]  # fmt: skip
    day_s = 86400 / 10 / best  # a day of 10 s telemetry, drained
    p99 = lat["p99Ms"] / 1000
    out += _beside([
        ("commit -> PUBACK p99", f"{lat['p99Ms']} ms",
         _of_periods(p99)),
        ("a day offline (10 s telemetry) drains in", f"{day_s:.1f} s",
         [f"{day_s / p[1]:.2g} periods of {p[1]:g} s" for p in PEERS]),
    ])  # fmt: skip
    return out


def _ocpp(bench: dict[str, Any] | None) -> list[str]:
    out, r = _section("OCPP charge points (`bench/ocpp.py`)", "OCPP", bench)
    if r is None:
        return out
    out += [
        "Simulated OCPP charge points (one connector and one EV each, in a child process) "
        "connected over loopback to the agent's central system; the control loop at 4 Hz "
        "sends their limits as SetChargingProfile. Round trip: the agent's OCPP calls, "
        "sent to answered, in steady state.",
        "",
    ]
    rows = []
    for x in r["rows"]:
        c = x["cycle_ms"]
        rows.append([x["charge_points"], x["connected"], x["cycles"], _f(c["p50"], 1),
                     _f(c["p99"], 1), x["overruns"], f"{100 * x['cpu_share']:.1f} %",
                     x["calls"], _f(x["rtt_ms_p50"] or 0, 1), _f(x["rtt_ms_p99"] or 0, 1)])
    out += _table(["charge points", "connected", "cycles", "cycle p50 ms", "cycle p99 ms",
                   "overruns", "CPU", "OCPP calls", "round trip p50 ms", "round trip p99 ms"],
                  rows)  # fmt: skip
    big = next((x for x in r["rows"] if x["charge_points"] == 100), None)
    if big is not None:
        out += [f"Target: 100 charge points with the cycle p99 under 40 ms: "
                f"{_met(big['connected'] == 100 and big['cycle_ms']['p99'] < 40)}.", ""]
    return out


BURST_TARGET_CPS, BURST_TARGET_P99_MS = 100, 40.0  # issue 14


def _ocpp_burst(bench: dict[str, Any] | None) -> list[str]:
    out, r = _section("OCPP bursts (`bench/ocpp.py --burst`)", "OCPP burst", bench)
    if r is None:
        return out
    # The pacing's cap as the run had it (older raw files lack it: the default then, 25).
    cap = next((x["increases_per_cycle"] for x in r["rows"] if "increases_per_cycle" in x), 25)
    out += [
        "The same charge points and loop, but the simulator's base load steps every second "
        "(between 0 and 2 kW per charge point), so every charger's limit moves in the same "
        "cycle: one cycle decides a decrease for every charger, a later one an increase for "
        "every charger (the allocator's worst case for OCPP: one profile per charger at once). "
        "The bench station has 12 kW of grid capacity per charger and EVs of 8-20 kW, so that "
        "100 chargers stay within the simulated meter's plausible 2 MW. Profiles go out right "
        "after the cycle, decreases first and all of them, at most `[ocpp] increases_per_cycle` "
        f"({cap}) chargers' increases per cycle; \"increases deferred\" counts the chargers held "
        "over to a later cycle so. Before/after figures of that change and where a burst's time "
        "went: [ocpp.md](ocpp.md), \"Bursts\".",
        "",
    ]
    rows = []
    for x in r["rows"]:
        c = x["cycle_ms"]
        rows.append([x["charge_points"], x["connected"], x["cycles"], _f(c["p50"], 1),
                     _f(c["p99"], 1), _f(c["max"], 1), x["overruns"],
                     f"{100 * x['cpu_share']:.1f} %", x["calls"], x["deferred_increases"],
                     x["errors"], _f(x["rtt_ms_p50"] or 0, 1), _f(x["rtt_ms_p99"] or 0, 1)])
    out += _table(["charge points", "connected", "cycles", "cycle p50 ms", "cycle p99 ms",
                   "max ms", "overruns", "CPU", "OCPP calls", "increases deferred", "errors",
                   "round trip p50 ms", "round trip p99 ms"], rows)  # fmt: skip
    target = (f"Target (issue 14): {BURST_TARGET_CPS} charge points with the cycle p99 under "
              f"{BURST_TARGET_P99_MS:g} ms in bursts")
    big = next((x for x in r["rows"] if x["charge_points"] == BURST_TARGET_CPS), None)
    if big is None:
        return out + [f"{target}: not measured (no run at {BURST_TARGET_CPS}).", ""]
    ok = big["connected"] == BURST_TARGET_CPS and big["cycle_ms"]["p99"] < BURST_TARGET_P99_MS
    return out + [f"{target}: {_met(ok)} ({_f(big['cycle_ms']['p99'], 1)} ms, "
                  f"{big['connected']} connected).", ""]  # fmt: skip


def _ocpp_trigger(bench: dict[str, Any] | None) -> list[str]:
    out, r = _section("OCPP TriggerMessage (`bench/ocpp_trigger.py`)", "OCPP trigger", bench)
    if r is None:
        return out
    out += [
        "Two 1-phase EVs squeezed under a metered 32 A sub-board with 10 s meter values; one "
        "pauses by itself behind a sample that shows it drawing. Simulated seconds from the "
        "pause, median / max over runs: CP1's next sample, the end of the agent's hold of the "
        "fall, CP1 capped at its minimum, and CP2 granted more than an equal share (the power "
        "the pause frees); TriggerMessages sent in the pause; the sub-board's peak. Charge "
        "points answering TriggerMessage and refusing it, alternating, in the same run. What "
        "it means: [ocpp.md](ocpp.md), \"An EV that pauses by itself behind a stale sample\".",
        "",
    ]

    def cell(x: dict[str, Any]) -> str:
        miss = f" ({x['missing']} none)" if x["missing"] else ""
        return f"{_f(x['median'], 2)} / {_f(x['max'], 2)}{miss}"

    rows = [[x["version"], "answered" if x["triggers"] else "refused", x["runs"],
             cell(x["sampleS"]), cell(x["releasedS"]), cell(x["capS"]), cell(x["increaseS"]),
             f"{x['triggerMessages']['median']:g}", f"{x['subPeakA']:.2f} A"]
            for x in r["rows"]]  # fmt: skip
    return out + _table(["OCPP", "TriggerMessage", "runs", "CP1 sample s", "hold ends s",
                         "CP1 capped s", "CP2 more s", "TriggerMessages", "sub-board peak"],
                        rows, "llrrrrrrr")  # fmt: skip


def _planner_and_savings(bench: dict[str, Any] | None) -> list[str]:
    out, r = _section("Planner and savings (`bench/savings.py`)", "savings", bench)
    if r is None:
        return out + ["(The planner's solve times come from the same run.)", ""]
    rows = r["planner"]
    default = next((x for x in rows if x["variant"] == "default"), rows[0])
    out += [
        f"The reference day (`{Path(r['scenario']).name}`: 24 h of 15-minute prices, PV, base "
        "load and EV arrivals) replayed under the rolling horizon planner (HiGHS LP, 24 h of "
        "15-minute slots, re-planned every 15 minutes and on events, in a worker thread beside "
        "the control loop), against the uncontrolled counterfactual (every EV at its maximum "
        "from arrival, no battery) and the perfect-foresight optimum (one LP over the whole "
        "day, knowing every arrival). All measured in one run.",
        "",
        "### Planner",
        "",
    ]
    out += _table(["variant", "plans", "solve median", "solve max", "replay wall time"],
                  [[x["variant"], x["plans"], f"{x['solveMedianS'] * 1000:.1f} ms",
                    f"{x['solveMaxS'] * 1000:.1f} ms", f"{x['replayWallS']:.1f} s"]
                   for x in rows])  # fmt: skip
    med = default["solveMedianS"]
    out += [f"Target: solve median <= 1 s: {_met(med <= 1)}. The whole-day optimum LP solves in "
            f"{r['optimumSolveS'] * 1000:.0f} ms.", ""]  # fmt: skip
    out += _beside([("planner solve, median / max (default)",
                     f"{med * 1000:.1f} / {default['solveMaxS'] * 1000:.1f} ms",
                     _of_periods(default["solveMaxS"], "{period:g} s (max)"))])
    out += ["### Savings", ""]
    out += _table(["variant", "replan", "cost EUR", "savings", "over optimum", "peak kW",
                   "delivered kWh", "unmet kWh"],
                  [[x["variant"], f"{x['replanMinutes']:g} min", _f(x["cost"], 2),
                    f"{x['savingsPct']:.1f} %", f"{x['overOptimumPct']:.1f} %",
                    _f(x["peakKw"], 1), _f(x["energyDelivered"], 1), _f(x["unmetEnergy"], 1)]
                   for x in rows])  # fmt: skip
    out += [
        f"Uncontrolled: {r['baselineCost']:.2f} EUR, {r['baselineDelivered']:.1f} kWh delivered. "
        f"Perfect-foresight optimum: {r['optimumCost']:.2f} EUR, peak {r['optimumPeak']:.1f} kW, "
        f"{r['optimumDelivered']:.1f} kWh delivered.",
        "",
        f"Targets (default variant): savings >= 40 %: {_met(default['savingsPct'] >= 40)} "
        f"({default['savingsPct']:.1f} %); within 3 % of the optimum: "
        f"{_met(default['overOptimumPct'] <= 3)} ({default['overOptimumPct']:.1f} %); at least "
        "as much energy delivered as uncontrolled: "
        f"{_met(default['energyDelivered'] >= r['baselineDelivered'])}.",
        "",
        "None of the three peers publishes a savings figure on a comparable day, so the "
        "comparison here is with the two bounds measured in the same run: doing nothing "
        "(uncontrolled) and knowing the future (optimum). See [planner.md](planner.md) for "
        "what the variants change.",
        "",
    ]  # fmt: skip
    return out + _generated_days(r)


def _generated_days(r: dict[str, Any]) -> list[str]:
    """Issue 16's bench: generated days, each after seven days of history."""
    days, sm = r.get("days") or [], r.get("summary") or {}
    if not days:
        return []
    out = ["### Days it has never seen", "",
           f"{sm['days']} generated days (`hardware_sim.station_days`), each replayed after "
           "learning from the seven days before it (docs/planner.md has the method).", ""]
    out += _table(["day", "uncontrolled EUR", "ours EUR", "optimum EUR", "savings", "gap",
                   "peak kW", "unmet kWh", "failed plans"],
                  [[d["day"], _f(d["uncontrolled"], 2), _f(d["cost"], 2), _f(d["optimum"], 2),
                    f"{d['savingsPct']:.1f} %", f"{d['gapPct']:+.1f} %", _f(d["peakKw"], 1),
                    _f(d["unmetEnergy"], 1), d["failedPlans"]] for d in days])  # fmt: skip
    n = sm["days"]
    out += [
        f"Targets (issue 16): savings >= 40 % every day: "
        f"{_met(sm['savingsMin'] >= 40)} ({sm['savingsMin']:.1f} to {sm['savingsMax']:.1f} %); "
        f"median gap <= 3 %: {_met(sm['gapMedian'] <= 3)} ({sm['gapMedian']:+.1f} %); worst "
        f"<= 8 %: {_met(sm['gapWorst'] <= 8)} ({sm['gapWorst']:+.1f} %); delivered >= "
        f"uncontrolled: {sm['deliveredAtLeastUncontrolled']}/{n} days; battery end >= start: "
        f"{sm['batteryEndAtLeastStart']}/{n} days; failed plans: {sm['failedPlans']}.",
        "",
    ]  # fmt: skip
    return out


def _history(bench: dict[str, Any]) -> str:
    """What else happened to a benchmark's run: a retry, a later re-run."""
    notes = []
    if "retried" in bench:
        notes.append(f"first attempt failed ({bench['retried']}), this is the second")
    if "rerun" in bench:
        notes.append(f"re-run alone at {bench['rerun']}")
    return "".join(f"; **{n}**" for n in notes)


def render(data: dict[str, Any]) -> str:
    m, b = data["machine"], data["benches"]
    run_lines = [f"| {name} | `{x['args']}` | {x['note']}{_history(x)} | {x['wallS']:.0f} s |"
                 for name, x in b.items()]  # fmt: skip
    load = f"{m['loadBefore'][0]:.2f} before, {m.get('loadAfter', ['?'])[0]} after"
    out = [
        "# Performance",
        "",
        "<!-- Generated by `make bench` (bench/run_all.py). Do not edit, but between the notes "
        "markers (`<!-- notes -->` ... `<!-- /notes -->`, each block at the end of its section): "
        "those are kept by the next run. -->",
        "",
        f"Measured on {m['date']}: {m['cpu']}, {m['nproc']} cores (`nproc`), "
        f"{_f(m['memGb'])} GB RAM, Linux {m['kernel']}, Python {m['python']}; load average "
        f"{load}. **The machine is shared with other work and noisy**: absolute figures move "
        "by tens of percent between runs, and a single slow outlier can set a p99. Medians are "
        "used throughout, and every ratio is between figures measured side by side in the same "
        "run. A station PC (embedded x86-64 or ARM64) may well be slower per core: the margins "
        "against each period matter more than the absolute figures.",
        "",
        "Every benchmark runs in its own interpreter (`python -P bench/NAME.py --json`), one after "
        "the other:",
        "",
        "| benchmark | arguments | sizes | wall time |",
        "|---|---|---|---:|",
        *run_lines,
        "",
        f"Whole run: {m.get('totalWallS', 0):.0f} s. Each script prints a readable table when "
        "run by hand (`.venv/bin/python -P bench/allocator.py`; plain `python bench/X.py` works "
        "too).",
        "",
    ]
    out += _summary(b)
    out += _allocator(b.get("allocator"))
    out += _modbus(b.get("modbus"))
    out += _loop(b.get("loop"))
    out += _loop_scale(b.get("loop-scale"))
    out += _uplink(b.get("uplink"))
    out += _planner_and_savings(b.get("savings"))
    out += _ocpp(b.get("ocpp"))
    out += _ocpp_burst(b.get("ocpp-burst"))
    out += _ocpp_trigger(b.get("ocpp-trigger"))
    return "\n".join(out).rstrip() + "\n"


README_BEGIN, README_END = "<!-- bench:tables -->", "<!-- /bench:tables -->"
NOTES_BEGIN, NOTES_END = "<!-- notes -->", "<!-- /notes -->"


def _notes_by_section(text: str) -> dict[str, list[str]]:
    """Each `## ` section's hand-written blocks (between the notes markers) in `text`."""
    out: dict[str, list[str]] = {}
    section = ""
    block: list[str] | None = None
    for line in text.splitlines():
        if block is not None:
            block.append(line)
            if line.strip() == NOTES_END:
                out.setdefault(section, []).append("\n".join(block))
                block = None
        elif line.strip() == NOTES_BEGIN:
            block = [line]
        elif line.startswith("## "):
            section = line
    return out


def keep_notes(old: str, new: str) -> str:
    """`new` with `old`'s hand-written notes put back at the end of their sections.

    Measurements taken by hand (a side-by-side run, what was tried and not kept) sit beside
    the generated tables they explain; written as plain text in the generated file, the next
    `make bench` dropped them. A section the new render no longer has keeps its notes at the
    end, under its old heading, rather than losing them."""
    notes = _notes_by_section(old)
    if not notes:
        return new
    lines = new.rstrip("\n").split("\n")
    out: list[str] = []
    section = ""

    def flush() -> None:
        blocks = notes.pop(section, [])
        if blocks:
            while out and not out[-1].strip():
                out.pop()
            out.extend(["", *"\n\n".join(blocks).split("\n"), ""])

    for line in lines:
        if line.startswith("## "):
            flush()
            section = line
        out.append(line)
    flush()
    for heading, blocks in notes.items():  # sections this render no longer has
        out.extend(["", heading, "", *"\n\n".join(blocks).split("\n")])
    return "\n".join(out).rstrip() + "\n"


def readme_tables(data: dict[str, Any]) -> str:
    """The README's measured tables (allocator; savings), from the same run as the doc."""
    out = [f"Measured by `make bench` on {data['machine']['date']} "
           f"({data['machine'].get('cpu', 'this machine')}, shared and noisy; medians).", ""]
    alloc = data["benches"].get("allocator", {}).get("result")
    if alloc:
        out += _table(["sessions", "kernel us", "allocate() us", "reference us", "reference / kernel"],
                      [[x["sessions"], _f(x["kernel_us"], 2), _f(x["api_us"], 0),
                        _f(x["reference_us"], 0), f"{x['ratio']:.0f}x"] for x in alloc["rows"]])
    sav = data["benches"].get("savings", {}).get("result")
    if sav:
        d = next((x for x in sav["planner"] if x["variant"] == "default"), sav["planner"][0])
        # Unmet: what the EVs asked for by departure and did not get (requested - delivered),
        # so a saving is never read without what it cost the drivers.
        requested = sav.get("requested")

        def unmet(delivered: float) -> str:
            return "-" if requested is None else _f(max(0.0, requested - delivered), 1)

        out += _table(["reference day", "cost EUR", "savings", "peak kW", "delivered kWh",
                       "unmet kWh"], [
            ["uncontrolled (every EV at its maximum)", _f(sav["baselineCost"], 2), "-", "-",
             _f(sav["baselineDelivered"], 1), unmet(sav["baselineDelivered"])],
            ["sems-edge rolling planner", _f(d["cost"], 2), f"{d['savingsPct']:.1f} %",
             _f(d["peakKw"], 1), _f(d["energyDelivered"], 1), _f(d["unmetEnergy"], 1)],
            ["perfect-foresight optimum", _f(sav["optimumCost"], 2),
             f"{100 * (1 - sav['optimumCost'] / sav['baselineCost']):.1f} %",
             _f(sav["optimumPeak"], 1), _f(sav["optimumDelivered"], 1),
             unmet(sav["optimumDelivered"])],
        ], "lrrrrr")  # fmt: skip
    return "\n".join(out).rstrip() + "\n"


def update_readme(path: Path, data: dict[str, Any]) -> bool:
    """Rewrite the README's block between the bench markers; False when it has none."""
    text = path.read_text()
    if README_BEGIN not in text or README_END not in text:
        return False
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    path.write_text(f"{head}{README_BEGIN}\n{readme_tables(data)}{README_END}{tail}")
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", choices=[b.name for b in BENCHES],
                    help="run just this benchmark (repeatable); the others show as not run")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "performance.md")
    ap.add_argument("--raw", type=Path, help="also write the benchmarks' JSON here")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md",
                    help="README whose bench:tables block is rewritten (default README.md)")
    ap.add_argument("--from-raw", type=Path, help="render from a --raw file, run nothing")
    args = ap.parse_args(argv)  # fmt: skip

    rerun = args.from_raw is not None
    data = json.loads(args.from_raw.read_text()) if rerun else {"machine": machine(), "benches": {}}
    selected = [b for b in BENCHES if b.name in (args.only or ([] if rerun else [b.name]))]
    t0 = time.perf_counter()
    for bench in selected:
        outcome = run_one(bench)
        if "error" in outcome:
            first = outcome["error"]
            outcome = run_one(bench)
            outcome["retried"] = first
        outcome["args"] = " ".join(bench.args) or "(defaults)"
        outcome["note"] = bench.note
        if rerun:
            outcome["rerun"] = machine()["date"]
        data["benches"][bench.name] = outcome
    if selected and not rerun:
        data["machine"]["loadAfter"] = [round(x, 2) for x in os.getloadavg()]
        data["machine"]["totalWallS"] = round(time.perf_counter() - t0, 1)
    if args.raw is not None:  # before rendering: a rendering bug loses no measurement
        args.raw.write_text(json.dumps(data, indent=1) + "\n")
    old = args.out.read_text() if args.out.exists() else ""
    args.out.write_text(keep_notes(old, render(data)))
    if update_readme(args.readme, data):
        print(f"bench: updated the tables in {args.readme}", file=sys.stderr)
    failed = [name for name, b in data["benches"].items() if "error" in b]
    for name in failed:
        print(f"bench: {name} failed: {data['benches'][name]['error']}", file=sys.stderr)
    print(f"bench: wrote {args.out}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
