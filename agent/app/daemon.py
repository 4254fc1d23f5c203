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
from typing import TYPE_CHECKING, Any

from agent.api.daemon_context import DaemonContext
from agent.app.assembly import build_control
from agent.app.commands import LoopCommands
from agent.app.housekeeping import prune_signals
from agent.app.instance_lock import AlreadyRunning, InstanceLock
from agent.app.sdnotify import Notifier
from agent.config.ceilings import HardCeilings
from agent.config.settings import AgentSettings, ConfigError, load
from agent.config.station_config import Reconfigurer, overlay
from agent.control.devices import DeviceStatus, StationDevices
from agent.control.events import UplinkHook
from agent.control.stats import CycleStats
from agent.model.clock import Clock, RealClock
from agent.ocpp.wiring import attach_ocpp
from agent.state.station_state import StationState
from agent.store import connect
from agent.store.schema import SchemaError

if TYPE_CHECKING:
    import sqlite_utils

    from agent.api.server import ApiServer
    from agent.app.virtual_station import StoredVirtualStation
    from agent.store.signals import Signals
    from agent.uplink import Uplink
    from agent.uplink.bridge import UplinkBridge

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
    serve_api: bool = True,
    config_path: Path | None = None,
) -> int:
    """Run until `stop` is set or SIGTERM/SIGINT arrives.

    With `[mqtt]` the MQTT uplink runs in this loop on the same SQLite file (its own
    connection; WAL lets both write): the control loop's events become uplink messages
    (agent/uplink/bridge.py) and cloud commands act on the station (agent/app/commands.py).
    The local API, the bridge and systemd's status line read one read model, the loop's
    `StationState` (agent/state/station_state.py), made here before them all.
    `uplink` (tests): a hook to use instead; `signals`: the cloud signals to share. With
    `serve_api` the local API answers on `[api]`'s socket; a station without configured
    chargers is driven through that API: its chargers are virtual devices under a control
    loop of its own (agent/app/virtual_station.py: a `ControlLoop`, run as a task beside this
    one, which reads the grid meter for telemetry and health), its sessions resumed from
    the store and their events sent through the same uplink hook.
    `config_path`: the settings file, re-read on SIGHUP (agent/app/config_reload.py)."""
    clock = clock or RealClock()
    stop = stop or asyncio.Event()
    notifier = Notifier(environ)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    db = _open_store(settings)
    cloud: Uplink | None = None
    bridge: UplinkBridge | None = None
    if uplink is None and settings.mqtt is not None:
        from agent.uplink import Uplink

        try:
            cloud = Uplink.open(settings.mqtt, settings.storage.db_path, version=_version(),
                                clock=clock.now, max_pages=settings.storage.max_pages)  # fmt: skip
        except ValueError as exc:  # the command signing key: unreadable, exposed or short
            db.conn.close()
            raise ConfigError([str(exc)]) from None
        signals = cloud.signals
    if signals is None:
        from agent.store.signals import Signals

        signals = Signals(db)
    # The cloud's last station configuration (persisted) over the settings file's.
    ceilings = HardCeilings.of(settings)  # the file's, before any stored configuration
    settings = overlay(settings, signals.station_config())
    try:
        devices = StationDevices(settings)
    except ValueError as exc:  # ProfileError, EndpointError: settings.load() checks these first
        db.conn.close()
        raise ConfigError([f"devices: {exc}"]) from None
    central = attach_ocpp(devices, settings)
    # The one read model first: the bridge reads it and is the hook the loop (which records
    # into it) emits through, so both are built with it and neither is joined later.
    state = StationState(settings, CycleStats(), DeviceStatus(devices))
    if cloud is not None:
        from agent.uplink.bridge import UplinkBridge

        bridge = UplinkBridge(cloud, state, db, now=clock.now)
        uplink = bridge
    control = build_control(
        settings, db, devices, clock, notifier=notifier, uplink=uplink, signals=signals,
        state=state,
    )  # fmt: skip
    if central is not None:  # profiles go out right after each cycle, not inside it
        central.pace_after_cycles(control)
    reconfigurer = Reconfigurer(control, ceilings)
    reloads: set[asyncio.Task[bool]] = set()
    if config_path is not None:
        from agent.app.config_reload import reload

        def on_sighup() -> None:
            task = loop.create_task(reload(config_path, control.s, reconfigurer))
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, on_sighup)
    commands = LoopCommands(control, reconfigurer)
    if cloud is not None:
        from agent.uplink.commands import StationTarget

        cloud.target = StationTarget(commands)
    sessions = control.controller.sessions
    tasks: list[asyncio.Task[None]] = []
    api: ApiServer | None = None
    station: StoredVirtualStation | None = None
    try:
        if central is not None:  # chargers connect from here on; limits wait for the loop
            await central.start()
        await control.start()
        if control.planner is not None:  # off the control loop's path: its own task
            tasks.append(asyncio.create_task(control.planner.run(stop)))
        tasks.append(asyncio.create_task(prune_signals(signals, clock, stop)))
        if cloud is not None and bridge is not None:
            tasks.append(asyncio.create_task(cloud.run()))
            tasks.append(asyncio.create_task(bridge.watch(stop)))
            bridge.uplink.publish(bridge.health("startup"))
        if serve_api:
            ctx: Any
            if settings.station.chargers:
                ctx = DaemonContext(state, commands, db, clock, signals=signals,
                                    uplink=cloud)  # fmt: skip
            else:
                ctx = station = _api_station(settings, db, clock, signals, cloud, uplink,
                                             bridge)  # fmt: skip
                tasks.append(asyncio.create_task(station.run(settings.control.period_s, stop)))
            api = await _start_api(settings, ctx)
        resumed = len(sessions.active) + (len(station.active_records()) if station else 0)
        notifier.ready(
            f"{len(settings.station.chargers)} chargers, {resumed} sessions resumed, "
            f"period {settings.control.period_s * 1000:.0f} ms"
        )
        log.info("agent started for station %s", settings.station.id)
        await control.run(stop)
    finally:
        notifier.stopping("writing fallback limits")
        stop.set()
        try:
            await control.shutdown()
            if station is not None:
                _save_api_sessions(station)
        finally:
            if api is not None:
                await api.stop()
            # Cancelling the uplink publishes the retained `state` offline, then disconnects.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await devices.close()
            if central is not None:
                await central.close()
            if cloud is not None:
                cloud.outbox.conn.close()
            db.conn.close()
            notifier.close()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
    log.info("agent stopped")
    return 0


def _open_store(settings: AgentSettings) -> sqlite_utils.Database:
    import sqlite3

    path = settings.storage.db_path
    try:
        return connect(path, max_pages=settings.storage.max_pages)
    except (OSError, sqlite3.Error) as exc:
        why = getattr(exc, "strerror", None) or exc
        raise ConfigError([f"storage.db_path: cannot open {path}: {why}"]) from None


def _api_station(
    settings: AgentSettings,
    db: sqlite_utils.Database,
    clock: Clock,
    signals: Signals,
    cloud: Uplink | None,
    hook: UplinkHook | None,
    bridge: UplinkBridge | None,
) -> StoredVirtualStation:
    """The station without configured chargers (chargers known through the API, as virtual
    devices) under a control loop of its own (run as a task); its sessions resumed from the
    store (their `session_resumed` events reach `hook` now) and reported with the tracker's
    on the uplink."""
    from agent.app.virtual_station import StoredVirtualStation

    on_event = hook.enqueue if hook is not None else None
    station = StoredVirtualStation.open(settings, db, clock, signals=signals, uplink=cloud,
                                        on_event=on_event)  # fmt: skip
    if bridge is not None:
        bridge.follow_sessions(station.active_records)
        bridge.follow_connectors(station.telemetry_connectors)
    return station


def _save_api_sessions(station: StoredVirtualStation) -> None:
    """Clean shutdown: the API sessions' figures saved, their rows left `active` so the next
    start resumes them (the integration has not ended them)."""
    import sqlite3

    try:
        station.flush()
    except sqlite3.Error as exc:
        log.error("API sessions not saved at shutdown: %s", exc)


async def _start_api(settings: AgentSettings, ctx: Any) -> ApiServer | None:
    """The local API in this loop, over `ctx` (the daemon's context, or the API-only
    station). A socket that cannot be opened is logged, not fatal: the station stays
    controlled."""
    from agent.api import create_app
    from agent.api.server import ApiServer

    server = ApiServer(create_app(ctx), settings.api)
    try:
        await server.start()
    except (OSError, ValueError, RuntimeError, TimeoutError) as exc:
        log.error("local API not started: %s", exc)
        await server.stop()
        return None
    log.info("local API on %s", settings.api.socket_path)
    return server


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sems-edge")
    except PackageNotFoundError:  # running from a source tree without an install
        return "0+unknown"


EX_TEMPFAIL = 75  # sysexits: another instance holds the state directory; try later


def main(config: str | Path, *, json_logs: bool = False) -> int:
    """`sems run`: validate the settings (same messages as `sems config check`), then run.
    A configuration the daemon cannot start with is exit 78 with those lines, never a
    traceback: systemd's RestartPreventExitStatus=78 then stops restarting it in a loop.
    A second agent on the same state directory exits 75 before touching anything."""
    from agent.app import logs

    try:
        settings = load(config)
    except ConfigError as exc:
        _refuse(exc, json_logs)
        return EX_CONFIG
    logs.setup(settings.log_level, as_json=json_logs)
    if json_logs and settings.planner.enabled:
        logs.swallow_solver_banner()
    lock = InstanceLock(Path(settings.storage.db_path).parent)
    try:
        lock.acquire()  # before anything is opened, bound or written
    except AlreadyRunning as exc:
        print(f"sems run: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    except OSError as exc:  # the state directory cannot be made or opened: as the store's
        path = settings.storage.db_path
        _refuse(ConfigError([f"storage.db_path: cannot open {path}: {exc.strerror or exc}"]),
                json_logs)
        return EX_CONFIG
    try:
        return asyncio.run(run_daemon(settings, config_path=Path(config)))
    except SchemaError as exc:  # a database written by a newer agent: one line, no traceback
        _refuse(ConfigError([f"storage.db_path: {exc}"]), json_logs)
        return EX_CONFIG
    except ConfigError as exc:
        _refuse(exc, json_logs)
        return EX_CONFIG
    finally:
        lock.release()


def _refuse(exc: ConfigError, json_logs: bool) -> None:
    for problem in exc.problems:
        if json_logs:
            from agent.app.logs import JsonLines

            record = logging.LogRecord("sems.agent", logging.ERROR, "", 0, problem, None, None)
            print(JsonLines().format(record), file=sys.stderr)
        else:
            print(problem, file=sys.stderr)
