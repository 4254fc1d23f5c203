"""A small stand-alone uplink: produce telemetry into the outbox and publish it.

    python -m agent.uplink.runner --db /tmp/u.db --port 1883 --count 500 --interval 0.01

Prints `committed <seq>` on stdout after each commit (the crash tests rely on it: a
line printed means the row is durable), and exits 0 once `--count` messages are produced
and, with `--exit-when-drained`, the outbox is empty. Useful for trying a broker set-up
without the whole daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sys
from pathlib import Path

from pydantic import ValidationError

from agent.uplink import MqttSettings, Uplink, messages


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m agent.uplink.runner", description=__doc__)
    p.add_argument("--db", type=Path, required=True, help="station database (SQLite)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--station", default="station", help="station id")
    p.add_argument("--count", type=int, default=100, help="telemetry messages to produce")
    p.add_argument("--interval", type=float, default=0.01, help="seconds between messages")
    p.add_argument("--keepalive", type=int, default=10)
    p.add_argument("--window", type=int, default=50)
    p.add_argument("--protocol", choices=["5", "3.1.1"], default="5")
    p.add_argument("--exit-when-drained", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def sample(i: int) -> messages.Telemetry:
    """A plausible, varying telemetry body (a day-shaped sine on the grid import)."""
    grid = 80 + 40 * math.sin(i / 50)
    return messages.Telemetry(
        grid=messages.GridReading(power_kw=round(grid, 3)),
        pv=messages.PvReading(power_kw=round(max(0.0, 30 * math.sin(i / 200)), 3)),
        connectors=[
            messages.ConnectorReading(charger_id="CP001", idx=k, limit_kw=75.0, power_kw=70.0 - k)
            for k in (1, 2)
        ],
    )


async def _run(args: argparse.Namespace) -> int:
    settings = MqttSettings(
        host=args.host, port=args.port, station_id=args.station, keepalive_s=args.keepalive,
        window=args.window, protocol=args.protocol, backoff_initial_s=0.2, backoff_max_s=2.0,
    )
    uplink = Uplink.open(settings, args.db, version="runner")
    task = asyncio.create_task(uplink.run())
    try:
        for i in range(args.count):
            seq = uplink.publish(sample(i))
            sys.stdout.write(f"committed {seq}\n")
            sys.stdout.flush()
            await asyncio.sleep(args.interval)
        if args.exit_when_drained:
            while uplink.outbox.stats().depth:
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        return asyncio.run(_run(args))
    except ValidationError as exc:
        err = exc.errors()[0]
        print(f"runner: {'.'.join(map(str, err['loc']))}: {err['msg']}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
