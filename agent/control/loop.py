"""The control cycle: I/O and scheduling around the controller, in named phases.

One cycle (`ControlLoop.cycle`), as OpenEMS runs its cycle:
1. read   - every device concurrently, with a deadline; then the frozen snapshot;
2. decide - the controller (agent/control/controller.py): snapshot in, `Decision` out, no I/O;
3. write  - limit writes in the safe order, heartbeats, the battery setpoint;
4. record - what the devices acknowledged and the store writes decide queued (one flush,
            after the limit writes), the degraded-mode events, the read model (one
            `StationState`, agent/state/station_state.py, given to the loop: the readers'
            only view of it), the observers (planner, ledger, battery watch) and the cycle
            statistics.
Between cycles (`_after_cycle`): event retries, the watchdog ping, systemd's status line,
telemetry and health for the uplink, then the `between_cycles` hooks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from agent.config.settings import AgentSettings
from agent.control.apply import Key, execute
from agent.control.controller import Controller
from agent.control.decision import Decision
from agent.control.devices import Reader, StationDevices
from agent.control.episodes import FaultLog
from agent.control.events import EventLog, UplinkHook
from agent.control.fallbacks import give_fallbacks
from agent.control.gc_freeze import freeze_startup_heap
from agent.control.memory import release_compiler_pages
from agent.control.plausibility import Plausibility
from agent.control.startup import StartupGate
from agent.control.stats import CycleStats
from agent.model.clock import Clock
from agent.model.snapshot import Snapshot

if TYPE_CHECKING:
    from agent.control.sessions import Session

log = logging.getLogger(__name__)


class Notifier(Protocol):
    """systemd's notification socket (agent/app/sdnotify.py), as the loop uses it."""

    watchdog_interval_s: float | None

    def watchdog(self) -> object: ...

    def status(self, text: str) -> object: ...


class Planner(Protocol):
    """The horizon planner as the loop feeds it (agent/energy/planning.py `PlannerTask`)."""

    def notice(self, decision: Decision) -> None: ...

    def configure_station(self, settings: AgentSettings) -> None: ...

    async def run(self, stop: asyncio.Event) -> None: ...


class Ledger(Protocol):
    """The savings ledger as the loop feeds it (agent/energy/ledger_recorder.py)."""

    s: AgentSettings

    def observe(self, decision: Decision) -> None: ...

    def flush(self) -> None: ...


class BatteryObserver(Protocol):
    """The battery watch as the loop feeds it (agent/energy/battery_watch.py)."""

    def observe(self, snap: Snapshot) -> None: ...

    def persist(self) -> None: ...


class ReadModel(Protocol):
    """The read model the loop records each cycle into (agent/state/station_state.py
    `StationState`); the loop reads back only what it wrote."""

    settings: AgentSettings
    healthy: bool

    @property
    def decision(self) -> Decision | None: ...

    @property
    def modes(self) -> frozenset[str]: ...

    def record(self, decision: Decision | None, limits: Mapping[Key, float | None],
               sessions: Iterable[object], store_error: str | None) -> None: ...

    def session_stopped(self, session_id: str) -> None: ...

    def telemetry(self) -> dict: ...

    def summary(self) -> str: ...


@dataclass(frozen=True, slots=True)
class WriteAcks:
    """What the devices acknowledged in the write phase."""

    writes: Mapping[Key, bool]
    heartbeats: Mapping[str, bool]
    battery_ok: bool | None  # None: no setpoint was due
    phases: Mapping[Key, bool] = field(default_factory=dict)  # phase switch registers


class ControlLoop:
    def __init__(
        self,
        settings: AgentSettings,
        devices: StationDevices,
        controller: Controller,
        clock: Clock,
        stats: CycleStats | None = None,
        notifier: Notifier | None = None,
        uplink: UplinkHook | None = None,
        *,
        state: ReadModel,
        planner: Planner | None = None,
        ledger: Ledger | None = None,
        battery: BatteryObserver | None = None,
    ) -> None:
        self.s = settings
        self.planner = planner
        self.ledger = ledger
        self.battery = battery
        self._observer_failed: set[str] = set()
        self.devices = devices
        self.controller = controller
        self.clock = clock
        self.stats = stats or CycleStats()
        self.notifier = notifier
        self.uplink = uplink
        self.reader = Reader(devices, clock, self.stats)
        # The one read model (agent/state/station_state.py), built by the composition root
        # on the same settings and statistics; the loop records each cycle into it.
        self.state = state
        self.faults = FaultLog(log, clock.monotonic)  # retried every cycle, logged per episode
        # Safety hooks: a charger reading that contradicts the charger is refused before
        # anything believes it (plausibility.py); a (re)start writes nothing before it has
        # read the station, and its first writes only lower (startup.py).
        self.plausibility = Plausibility(controller.chargers)
        self.startup = StartupGate(has_battery=settings.station.battery is not None,
                                   timeout_s=settings.control.stale_after_s)  # fmt: skip
        self._last_ping = float("-inf")
        self._stalled = False  # the last wake-up was late: no ping after the next cycle
        self._last_status = float("-inf")
        self._last_telemetry = float("-inf")
        self._last_health = float("-inf")
        self.events = EventLog(controller.sessions.db, clock, uplink)
        # Run after every cycle, before the sleep (the daemon's station-config swap and the
        # API-only station's step): between two cycles, so never in the middle of one.
        self.between_cycles: list[Callable[[], None]] = []
        # Readers served before the first cycle see the sessions resumed from the store.
        self.state.record(None, controller.limits, controller.sessions.active.values(),
                          self.store_error)

    def configure_station(self, settings: AgentSettings) -> None:
        """Swap in a validated station configuration between two cycles: every part that
        derives from it re-derives itself, and a V2G charger whose profile cannot take
        negative limits stays downgraded (as at start)."""
        self.s = self.state.settings = settings
        self.controller.configure_station(settings)
        self.plausibility.chargers = self.controller.chargers
        if self.planner is not None:
            self.planner.configure_station(settings)
        if self.ledger is not None:
            self.ledger.s = settings
        self._check_bidirectional()

    def replace_station(self, settings: AgentSettings, controller: Controller) -> None:
        """Swap in a station whose chargers changed, between two cycles: the API-only
        station's `POST /station/config` (agent/app/virtual_station.py), once every session
        on the old chargers is stopped. `controller`: a new one for `settings` (its arrays
        are sized for the chargers: `Controller.for_station`); the devices re-derived
        themselves in place (agent/control/virtual.py `VirtualDevices.configure`), so the
        reader keeps them. The plausibility checks start afresh for the new chargers; the
        start-up gate stays where it is (the loop has read the station already)."""
        self.controller = controller
        self.plausibility = Plausibility(controller.chargers)
        self.configure_station(settings)

    async def start(self) -> None:
        """Give every charger its fallback limit and communication timeout, so the station
        stays under its grid capacity if the agent dies from here on."""

        def contact(ch_id: str) -> None:
            self.controller.last_contact[ch_id] = self.clock.monotonic()

        await give_fallbacks(self.devices.chargers, self.controller, self.s, contact)
        self._check_bidirectional()
        self.controller.arrays.warm_up()  # compile or load the kernel before the first cycle
        release_compiler_pages()  # LLVM is not needed again: its ~70 MB may leave RAM
        freeze_startup_heap()  # full collections no longer walk the start-up heap mid-cycle

    def _check_bidirectional(self) -> None:
        """A charger configured for V2G whose profile refuses negative limits gets none."""
        for cid, ch in list(self.controller.chargers.items()):
            dev = self.devices.chargers.get(cid)
            if ch.v2g and dev is not None and not getattr(dev, "bidirectional", False):
                log.error("charger %s: v2g = true but its profile takes no negative limit "
                          "(bidirectional = true); V2G is off for it", cid)
                self.controller.chargers[cid] = ch.model_copy(update={"v2g": False})

    async def cycle(self) -> Decision:
        if self.devices.instant:
            return self.cycle_now()
        t0 = self.clock.monotonic()
        snap = await self._read(t0)
        decision = self._decide(snap)
        acks = await self._write(decision)
        self._record(decision, acks, t0)
        return decision

    def cycle_now(self) -> Decision:
        """The cycle of in-process devices (agent/control/virtual.py: `instant`, the
        chargers known through the local API), whose reads and writes are calls, not I/O:
        the same phases with nothing awaited, so nothing the event loop runs meanwhile (an
        API handler starting a session, a consumption report) lands between the read and
        the writes. Such a write cannot fail and is in force once made, so when this
        cycle's decreases held increases back (the apply rule grants increases only out of
        the headroom the limits in force leave), a second read, decide and write in the
        same cycle grants them out of what the decreases freed."""
        t0 = self.clock.monotonic()
        decision = self._decide(self._read_now(t0))
        acks = self._write_now(decision)
        plan = decision.plan
        if plan.held_back_kw > 0.0 and any(w.reason == "decrease" for w in plan.writes):
            self.controller.commit(decision, acks.writes, acks.heartbeats, acks.battery_ok,
                                   acks.phases)  # fmt: skip
            decision = self._decide(self._read_now(t0))
            acks = self._write_now(decision)
        self._record(decision, acks, t0)
        return decision

    def _read_now(self, t0: float) -> Snapshot:
        for name, dev in self.devices.by_name.items():
            self.reader.received(name, dev.reading(), t0)
        return self.plausibility.filter(self.reader.snapshot(t0))

    def _write_now(self, decision: Decision) -> WriteAcks:
        """The plan's writes in the safe order (decreases, then V2G ends, then increases),
        each in force once made; heartbeats are nothing to send."""
        chargers = self.devices.chargers
        writes: dict[Key, bool] = {}
        for reasons in (("decrease", "initial"), ("v2g_end",), ("increase",)):
            for w in decision.plan.writes:
                if w.reason in reasons:
                    chargers[w.charger_id].write_limit(w.idx, w.kw)
                    writes[(w.charger_id, w.idx)] = True
        return WriteAcks(writes, dict.fromkeys(decision.heartbeats, True), None)

    # --- the phases of one cycle --------------------------------------------------------

    async def _read(self, t0: float) -> Snapshot:
        """Phase 1: every device, concurrently, until the read deadline; then one frozen
        snapshot of what was read."""
        c = self.s.control
        await self.reader.read_all(t0 + c.period_s * c.read_deadline_fraction)
        return self.plausibility.filter(self.reader.snapshot(self.clock.monotonic()))

    def _decide(self, snap: Snapshot) -> Decision:
        """Phase 2: the controller, no I/O; the start-up gate may hold writes back, and
        refused readings show as `implausible:<charger>` modes (health names the device)."""
        decision = self.startup.gate(self.controller.decide(snap))
        if self.plausibility.refused:
            decision = replace(decision, budget=replace(
                decision.budget, modes=decision.budget.modes | self.plausibility.modes()))
        return decision

    async def _write(self, decision: Decision) -> WriteAcks:
        """Phase 3: limit writes (decreases first), phase switches (after the limits: a
        switch goes out once its connector's limit is 0), heartbeats, the battery setpoint."""
        writes = await execute(decision.plan, self.devices.chargers, self.faults)
        phases = await self._phase_switches(decision.phase_switches)
        beats = await self._heartbeats(decision.heartbeats)
        battery_ok = await self._battery(decision.battery_setpoint_kw)
        self._ask_samples(decision.samples_wanted)
        return WriteAcks(writes, beats, battery_ok, phases)

    def _ask_samples(self, keys: tuple[Key, ...]) -> None:
        """Ask chargers that can (OCPP: TriggerMessage) for a meter value now: a fall held
        out of the headroom until their next sample ends sooner (unseen_drops.py), and so
        does a raise's undrawn part counted from an old sample (controller.py)."""
        for cid, idx in keys:
            ask = getattr(self.devices.chargers.get(cid), "request_sample", None)
            if ask is None:
                continue
            try:
                ask(idx)
            except Exception as exc:  # a request that could not go out: the hold waits
                log.debug("sample request %s/%s failed: %s", cid, idx, exc)

    def _record(self, decision: Decision, acks: WriteAcks, t0: float) -> None:
        """Phase 4: what was acknowledged and the queued store writes (after the limit
        writes), mode events, the read model, the observers, the statistics."""
        self.controller.commit(decision, acks.writes, acks.heartbeats, acks.battery_ok,
                               acks.phases)  # fmt: skip
        if decision.budget.modes != self.state.modes:
            self.events.mode_change(self.state.modes, decision.budget.modes)
            self._last_status = float("-inf")  # systemd's STATUS= shows a new mode at once
        self.state.record(decision, self.controller.limits,
                          self.controller.sessions.active.values(), self.store_error)
        self.faults.tick()
        self.events.faults.tick()  # lasting degraded modes: a reminder every 10 minutes
        self._observe(decision)
        self.stats.record_cycle(self.clock.monotonic() - t0, self.s.control.period_s)

    def _observe(self, decision: Decision) -> None:
        """Feed the planner, the ledger and the battery watch; none may stop the loop."""
        battery = self.battery
        for name, fn in (
            ("planner", self.planner.notice if self.planner else None),
            ("ledger", self.ledger.observe if self.ledger else None),
            ("battery", (lambda d: battery.observe(d.snapshot)) if battery else None),
        ):
            if fn is None:
                continue
            try:
                fn(decision)
                self._observer_failed.discard(name)
            except Exception:
                if name not in self._observer_failed:  # logged once until it recovers
                    log.exception("%s: observing the cycle failed", name)
                    self._observer_failed.add(name)

    async def run(self, stop: asyncio.Event, max_cycles: int | None = None) -> None:
        """Cycle every period until `stop` is set. An overrun starts the next cycle at once
        (missed slots are skipped, not caught up)."""
        period = self.s.control.period_s
        next_t = self.clock.monotonic()
        n = 0
        while not stop.is_set() and (max_cycles is None or n < max_cycles):
            n += 1
            try:
                await self.cycle()
                self.state.healthy = True
            except Exception:
                # No watchdog ping: if cycles keep failing, systemd restarts the agent,
                # and the chargers' fallback limits keep the station safe meanwhile.
                log.exception("control cycle failed")
                self.state.healthy = False
            self._after_cycle()
            for hook in self.between_cycles:
                try:
                    hook()
                except Exception:
                    log.exception("between-cycles hook failed")
            next_t += period
            now = self.clock.monotonic()
            self._count_missed(now - next_t, period)  # a long cycle or a blocked hook
            if next_t < now:
                next_t = now
            await self._sleep_until(next_t, stop)
            self._count_missed(self.clock.monotonic() - next_t, period)  # woken late

    def _count_missed(self, late_s: float, period: float) -> None:
        """Slots no cycle ran in (the event loop was blocked) are overruns, and no watchdog
        ping follows until a cycle ran on time again (stats.py)."""
        slots = int(late_s // period)
        if slots > 0:
            self.stats.record_missed(slots)
            self._stalled = True

    async def _sleep_until(self, deadline: float, stop: asyncio.Event) -> None:
        # Through the injected clock (a test clock returns at once), cut short by stop.
        sleeper = asyncio.ensure_future(self.clock.sleep_until(deadline))
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in (sleeper, stopper):
            task.cancel()

    def _after_cycle(self) -> None:
        t = self.clock.monotonic()
        self.events.retry(t)
        n = self.notifier
        stalled, self._stalled = self._stalled, False
        if n is not None and self.state.healthy and not stalled and n.watchdog_interval_s is not None:
            if t - self._last_ping >= n.watchdog_interval_s / 2:
                n.watchdog()
                self._last_ping = t
        if n is not None and t - self._last_status >= 5.0:
            n.status(self.state.summary())
            self._last_status = t
        if self.uplink is not None and self.state.decision is not None:
            c = self.s.control
            if t - self._last_telemetry >= c.telemetry_interval_s:
                self.events.enqueue("telemetry", self.state.telemetry())
                self._last_telemetry = t
            if t - self._last_health >= c.health_interval_s:
                self.events.enqueue("health", {})  # the uplink builds its health message
                self._last_health = t

    def stop_session(self, session_id: str, reason: str) -> Session:
        """End an active session now (the API's and the cloud's command): the tracker's stop,
        and the read model shows it gone at once. KeyError for an id that is not active."""
        s = self.controller.sessions.stop(session_id, reason)
        self.state.session_stopped(session_id)
        return s

    @property
    def store_error(self) -> str | None:
        """Why the store refuses writes (disk full, I/O error), or None when it takes them."""
        return self.controller.sessions.store_error or self.events.error

    async def _phase_switches(self, orders: tuple[tuple[Key, int], ...]) -> dict[Key, bool]:
        acks: dict[Key, bool] = {}
        for (cid, idx), phases in orders:
            try:
                await self.devices.chargers[cid].set_phases(idx, phases)
            except Exception as exc:
                self.faults.failed(f"phases:{cid}/{idx}", "phase switch not written", str(exc))
                acks[(cid, idx)] = False
                continue
            self.faults.succeeded(f"phases:{cid}/{idx}")
            acks[(cid, idx)] = True
        return acks

    async def _heartbeats(self, chargers: tuple[str, ...]) -> dict[str, bool]:
        async def one(cid: str) -> tuple[str, bool]:
            try:
                await self.devices.chargers[cid].heartbeat()
                return cid, True
            except Exception as exc:
                log.debug("heartbeat %s failed: %s", cid, exc)
                return cid, False

        return dict(await asyncio.gather(*(one(c) for c in chargers)))

    async def _battery(self, setpoint: float | None) -> bool | None:
        if setpoint is None or self.devices.inverter is None:
            return None
        try:
            await self.devices.inverter.set_battery_setpoint(setpoint)
        except Exception as exc:
            self.faults.failed("setpoint", "battery setpoint not written", str(exc))
            return False
        self.faults.succeeded("setpoint")
        return True

    async def shutdown(self) -> None:
        """Leave the station safe without us: every connector at most its fallback share,
        then the sessions' energy flushed to the store."""
        ctl = self.controller

        async def one(cid: str) -> None:
            dev = self.devices.chargers[cid]
            ch = ctl.chargers[cid]
            for idx in range(1, ch.connectors + 1):
                key = (cid, idx)
                cur = ctl.limits.get(key)
                safe = ctl.fallback_per_connector[key]
                try:  # a V2G discharge ends too: the fallback shares are safe without it
                    await dev.set_limit(idx, safe if cur is None else max(0.0, min(cur, safe)))
                except Exception as exc:
                    log.warning("charger %s/%d: safe limit not written: %s", cid, idx, exc)

        await asyncio.gather(*(one(cid) for cid in self.devices.chargers))
        for name, save in (
            ("sessions", ctl.sessions.flush),
            ("ledger", self.ledger.flush if self.ledger else None),
            ("battery health", self.battery.persist if self.battery else None),
        ):
            if save is not None:
                try:
                    save()
                except Exception:
                    log.exception("%s not stored at shutdown", name)
