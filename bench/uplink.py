"""Uplink benchmark against a real Mosquitto on loopback.

    .venv/bin/python bench/uplink.py [--count 50000] [--windows 1,20,100] [--json]

- drain rate of `count` buffered telemetry messages, per in-flight window size
- commit -> PUBACK latency (p50/p99) at a steady 100 msg/s while connected
- SQLite bytes per buffered message (file size after checkpoint / rows)
- days of default telemetry (every 10 s) that fit in the default outbox caps
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, bench/ comes first on sys.path and bench/allocator.py would shadow the
# `allocator` package: drop that folder (bench/run_all.py also runs each with `python -P`).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the test suite's broker launcher
# ... but tests/agent and tests/allocator must not stand in for the packages.
sys.path.insert(0, str(ROOT))

from mosquitto import Mosquitto  # noqa: E402

from agent.store import connect  # noqa: E402
from agent.uplink import MqttSettings, Uplink  # noqa: E402
from agent.uplink.runner import sample  # noqa: E402


def settings(port: int, window: int) -> MqttSettings:
    return MqttSettings(host="127.0.0.1", port=port, station_id="bench", window=window,
                        backoff_initial_s=0.05, backoff_max_s=0.5)


def fill(uplink: Uplink, count: int) -> None:
    batch = 1000
    for start in range(0, count, batch):
        uplink.publish_many(sample(i) for i in range(start, min(count, start + batch)))


def file_bytes(path: Path) -> int:
    db = connect(path)
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = db.conn.execute("PRAGMA page_size").fetchone()[0]
    pages = db.conn.execute("PRAGMA page_count").fetchone()[0]
    db.conn.close()
    return int(page_size * pages)


async def drain(port: int, workdir: Path, window: int, count: int) -> dict[str, float]:
    path = workdir / f"drain-{window}.db"
    empty = file_bytes(path)
    uplink = Uplink.open(settings(port, window), path, version="bench")
    fill(uplink, count)
    size = file_bytes(path) - empty
    payload = uplink.outbox.stats().bytes
    t0 = time.perf_counter()
    task = asyncio.create_task(uplink.run())
    try:
        while uplink.outbox.stats().depth:
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    elapsed = time.perf_counter() - t0
    return {"window": window, "messages": count, "seconds": round(elapsed, 3),
            "msgPerS": round(count / elapsed), "fileBytesPerMsg": round(size / count, 1),
            "payloadBytesPerMsg": round(payload / count, 1)}


async def latency(port: int, workdir: Path, rate: float, seconds: float) -> dict[str, float]:
    uplink = Uplink.open(settings(port, 50), workdir / "latency.db", version="bench")
    uplink.status.keep_latencies = 1
    task = asyncio.create_task(uplink.run())
    try:
        while not uplink.status.connected:
            await asyncio.sleep(0.01)
        for i in range(int(rate * seconds)):
            uplink.publish(sample(i))  # one commit (fsync) per message, as in production
            await asyncio.sleep(1 / rate)
        while uplink.outbox.stats().depth:
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    lat = sorted(uplink.status.latencies)
    q = statistics.quantiles(lat, n=100)
    return {"messages": len(lat), "p50Ms": round(q[49] * 1000, 2), "p99Ms": round(q[98] * 1000, 2)}


def capacity(payload_bytes: float) -> dict[str, float]:
    d = MqttSettings()
    per_day = 86400 / d.telemetry_interval_s
    fit = min(d.outbox_max_rows, d.outbox_max_bytes / payload_bytes)
    return {"maxRows": d.outbox_max_rows, "maxBytes": d.outbox_max_bytes,
            "telemetryPerDay": per_day, "days": round(fit / per_day, 1),
            "daysWithThinning": round(fit * d.telemetry_thin_max_stride / per_day, 1)}


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "broker").start()
        try:
            drains = [await drain(broker.port, work, w, args.count) for w in args.windows]
            lat = await latency(broker.port, work, 100.0, 5.0)
        finally:
            broker.stop()
    return {"drain": drains, "latency": lat,
            "capacity": capacity(drains[-1]["payloadBytesPerMsg"]),
            "sqliteBytesPerMsg": drains[-1]["fileBytesPerMsg"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=50_000)
    p.add_argument("--windows", type=lambda s: [int(x) for x in s.split(",")], default=[1, 20, 100])
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    result = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"drain of {args.count} buffered messages to Mosquitto on loopback (target >= 5000 msg/s)")
    print(f"{'window':>8} {'seconds':>9} {'msg/s':>8} {'SQLite B/msg':>13} {'payload B/msg':>14}")
    for d in result["drain"]:  # type: ignore[union-attr]
        print(f"{d['window']:>8} {d['seconds']:>9} {d['msgPerS']:>8} {d['fileBytesPerMsg']:>13} "
              f"{d['payloadBytesPerMsg']:>14}")
    lat = result["latency"]
    print(f"commit -> PUBACK at 100 msg/s: p50 {lat['p50Ms']} ms, p99 {lat['p99Ms']} ms "  # type: ignore[index]
          f"({lat['messages']} messages)")  # type: ignore[index]
    cap = result["capacity"]
    print(f"default cap ({cap['maxRows']} rows, {cap['maxBytes'] // 2**20} MiB payload): "  # type: ignore[index]
          f"{cap['days']} days of 10 s telemetry, ~{cap['daysWithThinning']} days thinned to 1 in 8")  # type: ignore[index]
    return 0


if __name__ == "__main__":
    sys.exit(main())
