"""The station daemon: settings -> devices -> control loop -> store -> uplink -> systemd.

Start-up gives every charger its fallback limit and communication timeout before the
first cycle, then tells systemd READY. SIGTERM/SIGINT: STOPPING, every connector is left at
most at its fallback share, sessions are flushed to the store, exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from agent.assembly import build_control
from agent.clock import Clock, RealClock
from agent.control.devices import StationDevices
from agent.control.loop import UplinkHook
from agent.control.stats import CycleStats
from agent.sdnotify import Notifier
from agent.settings import AgentSettings, ConfigError, load
from agent.store import connect

if TYPE_CHECKING:
    from agent.signals import Signals

log = logging.getLogger("sems.agent")
EX_CONFIG = 78


async def run_daemon(
    settings: AgentSettings,
    *,
    clock: Clock | None = None,
    environ: Mapping[str, str] | None = None,
    stop: asyncio.Event | None = None,
    uplink: UplinkHook | None = None,
    signals: Signals | None = None,
) -> int:
    """Run until `stop` is set or SIGTERM/SIGINT arrives. `uplink`: the MQTT uplink's
    enqueue hook (agent/uplink/); without it session events and telemetry stay in the
    store's event log only. `signals`: the uplink's persisted cloud signals (shared so a
    new cap or tariff is obeyed at once); without it they are read from the store."""
    clock = clock or RealClock()
    stop = stop or asyncio.Event()
    notifier = Notifier(environ)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    db = connect(settings.storage.db_path)
    devices = StationDevices(settings)
    control = build_control(
        settings, db, devices, clock, stats=CycleStats(), notifier=notifier, uplink=uplink,
        signals=signals,
    )  # fmt: skip
    sessions = control.controller.sessions
    planning: asyncio.Task[None] | None = None
    try:
        await control.start()
        if control.planner is not None:  # off the control loop's path: its own task
            planning = asyncio.create_task(control.planner.run(stop))
        resumed = len(sessions.active)
        notifier.ready(
            f"{len(settings.station.chargers)} chargers, {resumed} sessions resumed, "
            f"period {settings.control.period_s * 1000:.0f} ms"
        )
        log.info("agent started for station %s", settings.station.id)
        await control.run(stop)
    finally:
        notifier.stopping("writing fallback limits")
        if planning is not None:
            planning.cancel()
            await asyncio.gather(planning, return_exceptions=True)
        try:
            await control.shutdown()
        finally:
            await devices.close()
            db.conn.close()
            notifier.close()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
    log.info("agent stopped")
    return 0


def main(config: str | Path) -> int:
    """`sems run`: validate the settings (same messages as `sems config check`), then run."""
    try:
        settings = load(config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EX_CONFIG
    logging.basicConfig(
        level=settings.log_level,
        format="%(levelname)s %(name)s: %(message)s",  # journald adds the time
        stream=sys.stderr,
    )
    return asyncio.run(run_daemon(settings))
