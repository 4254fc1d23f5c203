"""One place that assembles the control loop with its planner, savings ledger and battery
watch, for the daemon, the benchmark and the tests (which must run what the daemon runs).

    control = build_control(settings, db, devices, clock, stats=..., notifier=...,
                            uplink=..., signals=...)
    control.planner     # PlannerTask or None (planner.enabled = false): run it as a task
    control.ledger      # LedgerRecorder: 15-minute intervals, `savings` messages
    control.battery     # BatteryWatch or None (no battery configured)
    control.state       # StationState: the one read model, recorded once per cycle

`state`: the read model to record into, when a reader (the uplink bridge, which the loop
emits through) had to be built with it before the loop; its statistics are the loop's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.app.sdnotify import Notifier
from agent.config.settings import AgentSettings
from agent.control.controller import Controller
from agent.control.devices import DeviceStatus, StationDevices
from agent.control.events import UplinkHook
from agent.control.loop import ControlLoop
from agent.control.sessions import SessionTracker
from agent.control.stats import CycleStats
from agent.control.v2g import V2gDispatch
from agent.energy.battery_watch import BatteryWatch
from agent.energy.ledger_recorder import LedgerRecorder
from agent.energy.planning import Forecasts, PlannerTask
from agent.energy.tariffs import prices_at
from agent.model.clock import Clock
from agent.state.station_state import EnergyReadouts, StationState

if TYPE_CHECKING:
    import sqlite_utils

    from agent.energy.planning import Solve
    from agent.store.signals import Signals


def build_control(
    settings: AgentSettings,
    db: sqlite_utils.Database,
    devices: StationDevices,
    clock: Clock,
    *,
    stats: CycleStats | None = None,
    notifier: Notifier | None = None,
    uplink: UplinkHook | None = None,
    signals: Signals | None = None,
    solve: Solve | None = None,
    state: StationState | None = None,
    sessions: SessionTracker | None = None,
    energy: bool = True,
) -> ControlLoop:
    """`signals`: the uplink's (shared, so new cloud signals are seen at once); without it
    the daemon reads the persisted ones from `db`. `solve`: the planner's LP (tests).
    `sessions`: the session tracker to use (the API-only station's, source 'api').
    `energy` False: the controller alone, with no planner, savings ledger, battery watch or
    V2G dispatch (the API-only station, agent/app/virtual_station.py: its virtual meter
    measures nothing to plan or bill)."""
    if signals is None:
        from agent.store.signals import Signals

        signals = Signals(db)
    if state is None:
        state = StationState(settings, stats or CycleStats(), DeviceStatus(devices))
    elif stats is not None and stats is not state.stats:
        raise ValueError("stats: the read model's own statistics are the loop's")
    emit = uplink.enqueue if uplink is not None else None
    # Each session's cost: its kWh at the import price in force (the ledger's lookup).
    if sessions is None:
        sessions = SessionTracker(
            db, clock, emit, import_price=lambda ts: prices_at(settings.tariff, signals, ts)[0]
        )
    if not energy:
        return ControlLoop(settings, devices, Controller(settings, sessions, signals=signals),
                           clock, state.stats, notifier=notifier, uplink=uplink, state=state)  # fmt: skip
    battery = (
        BatteryWatch(settings.station.battery, db, signals)
        if settings.station.battery is not None
        else None
    )
    forecasts = Forecasts(db)
    planner: PlannerTask | None = None
    ledger = LedgerRecorder(
        settings,
        db,
        signals,
        forecasts,
        emit,
        expected_kwh=lambda sid: _energy_target(db, sid),
    )
    available = battery.available if battery is not None else None
    if settings.planner.enabled:
        planner = PlannerTask(
            settings,
            clock,
            db,
            signals,
            forecasts,
            interval_so_far=ledger.interval_so_far,
            peak_so_far=ledger.peak_so_far,
            battery_available=available,
            billing_day=ledger.billing_day,
            solve=solve,
        )
    v2g = V2gDispatch(settings.v2g, db, signals)
    if planner is not None:
        planner.v2g = v2g
    controller = Controller(
        settings,
        sessions,
        signals=signals,
        guide=planner.guidance if planner is not None else None,
        interval=ledger.interval_so_far,
        battery_available=available,
        v2g=v2g,
    )
    # What readers may see of the observers the loop feeds: set here, once, before anything
    # runs (they emit through the uplink hook, which reads this state, so they come after it).
    state.energy = EnergyReadouts(planner=planner, battery=battery, ledger=ledger)
    return ControlLoop(
        settings,
        devices,
        controller,
        clock,
        state.stats,
        notifier=notifier,
        uplink=uplink,
        state=state,
        planner=planner,
        ledger=ledger,
        battery=battery,
    )


def _energy_target(db: sqlite_utils.Database, session_id: str) -> float | None:
    row = db.execute("SELECT energy_target_kwh FROM sessions WHERE id = ?", [session_id]).fetchone()
    return None if row is None or row[0] is None else float(row[0])
