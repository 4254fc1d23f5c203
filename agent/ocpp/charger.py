"""`OcppCharger`: an OCPP charge point behind the same capability the control loop uses for
Modbus chargers (drivers.devices.Charger): `read()`, `set_limit()`, `heartbeat()`,
`set_fallback()`, `health`, `connectors`, `bidirectional`.

OCPP is slow (a SetChargingProfile round trip is tens to hundreds of ms, and one call at a
time per charger), so the cycle never waits for it: `set_limit` records the wanted limit and
returns; a sender task per charger sends it. What `read()` reports as the connector's limit
is what may be in force: the higher of the last accepted limit and one in flight. So a
decrease counts at the old limit until the charger accepts it, and an increase counts as
soon as it is sent; a Rejected or timed-out profile leaves the last accepted limit, which
health shows.

Order and pace: decreases go out before increases. A connector's limit is sent at most once
per `min_interval_s`, except a decrease where the charger accepted the previous one, and
the first profile of a new transaction, which go out at once (the grid limit first). Under
a control loop, what the loop asks for is sent right after its cycle (`pacing.SendPacer`:
every decrease in that period, increases possibly a cycle or more later).

Fallback: the charger-wide max profile is the rating for `hold_s` (the loop's comm
timeout), then the fallback; renewed every `hold_s * RENEW_FRACTION` while the loop
calls set_limit/heartbeat. So a charger that loses the agent falls to its fallback by itself.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agent.config.ocpp import OcppChargerConfig, OcppSettings
from agent.ocpp import profiles
from agent.ocpp.link import Link, Traffic
from agent.ocpp.merge import CsmsProfiles
from agent.ocpp.pacing import Due, SendPacer
from agent.ocpp.phases import ConnectorPhases, PhaseCaps
from agent.ocpp.rates import from_rate, pick_unit, to_rate
from drivers.device import DeviceError, NotSupported
from drivers.devices import ChargerReading, ConnectorReading
from drivers.health import Health, HealthTracker

log = logging.getLogger(__name__)

RENEW_FRACTION = 0.4  # renew the max profile after this share of its hold time
VERIFY_MARGIN_S = 5  # composite checked this long after the hold ends
TRIGGER_GAP_S = 2.0  # no TriggerMessage for a connector sampled or asked more recently


@dataclass(slots=True)
class _Connector:
    status: str | None = None  # as the charger said it (1.6 status / 2.0.1 state)
    state: str | None = None  # IEC 61851
    power_kw: float | None = None
    # When power_kw arrived (a meter value, or the stop); 0.0 until the first one, so a
    # charger that has sent none is one observation of nothing for the cap rule, not a new
    # one every cycle (which capped the EV at the probe margin until its first sample).
    power_ts: float | None = 0.0
    energy_kwh: float | None = None  # the charger's register
    start_kwh: float | None = None  # register at transaction start
    soc_pct: float | None = None
    ev_max_kw: float | None = None
    tx_id: str | int | None = None
    id_tag: str | None = None
    want: float | None = None  # kW the loop asked for
    accepted: float | None = None  # kW the charger accepted last (None: unknown)
    in_flight: float | None = None
    sent_at: float = float("-inf")
    sent_key: tuple | None = None  # (tx id, rate, phases) of the accepted profile
    last_answer: str | None = None
    last_profile: dict | None = None
    phases: ConnectorPhases = field(default_factory=ConnectorPhases)  # 1 <-> 3 switching


@dataclass(slots=True)
class MaxProfileState:
    fallback_kw: float = 0.0  # charger total; 0 until the agent sizes it (safe)
    hold_s: float = 10.0
    sent_at: float = float("-inf")
    answer: str | None = None
    verified: bool | None = None  # GetCompositeSchedule agreed (None: not checked/unsupported)
    composite_fallback: float | None = None
    dirty: bool = True  # ceilings changed: verify again after sending
    # Every connector's own profile accepted since the charger booted. Until then the max
    # profile stands at the fallback, not the rating: a connector without a profile has no
    # limit of its own (its composite is the max profile alone), so an EV plugged in before
    # its connector's first TxDefaultProfile would draw up to the charger's rating.
    opened: bool = False


@dataclass(slots=True)
class Info:
    """What `sems devices` shows."""

    version: str | None = None
    boot: dict[str, Any] = field(default_factory=dict)
    booted_at: float | None = None
    last_heartbeat: float | None = None
    connected: bool = False
    unit: str = "A"
    security_events: list[tuple[float, str]] = field(default_factory=list)


class OcppCharger:
    kind = "charger"
    bidirectional = False  # V2G over OCPP (ISO 15118-20 / 2.1) is not handled

    def __init__(self, name: str, cfg: OcppChargerConfig, ocpp: OcppSettings, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.cfg = cfg
        self.ocpp = ocpp
        self.connectors = cfg.connectors
        self._clock = clock
        self.traffic = Traffic()
        self._health = HealthTracker(offline_after=1, clock=clock)
        self.info = Info(unit=cfg.rate_unit or "A")
        self.max = MaxProfileState()
        self.conns = {i: _Connector(phases=ConnectorPhases(cfg.phases, cfg.phases))
                      for i in range(1, cfg.connectors + 1)}
        # Phase switching (agent/ocpp/phases.py): known after set-up, None where it cannot.
        self.phase_caps: PhaseCaps | None = None
        self.link: Link | None = None
        self.ready = False
        self.report: list[dict] = []  # 2.0.1 NotifyReport data
        self.firmware_status: str | None = None
        # Local controller mode: the CSMS's profiles cap the agent's; the relay, for describe().
        self.csms = CsmsProfiles()
        self.relay: Any = None
        # 1.6 transaction ids are ours to give: a random start so ids do not repeat across
        # agent restarts within a charger's memory.
        self._tx_ids = itertools.count(random.randint(1, 1 << 30))
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sender: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        # The central system's pacer (shared by its chargers); a lone charger wakes at once.
        self.pacer = SendPacer()
        self._triggered: dict[int, float] = {}  # connector -> when a meter value was asked
        self._no_trigger = False  # the charger refused TriggerMessage on this connection

    # ---- the capability the control loop uses -------------------------------------------
    @property
    def health(self) -> Health:
        return self._health.snapshot()

    async def read(self) -> ChargerReading:
        if self.link is None:
            raise DeviceError("disconnected", f"{self.cfg.charge_point_id}: not connected")
        conns = []
        caps, now = self.phase_caps, self._clock()
        # Local controller mode: the CSMS's limits in force, as _capped applies them, so the
        # control loop allocates what they leave to the others (docs/ocpp.md).
        relayed = bool(self.ocpp.upstream)
        for idx, c in self.conns.items():
            phases = None if caps is None else c.phases.reading(now, caps.pause_s,
                                                                self._where(idx))
            energy = None
            if c.energy_kwh is not None:
                energy = max(0.0, c.energy_kwh - (c.start_kwh or 0.0)) if c.tx_id else 0.0
            limits = [x for x in (c.accepted, c.in_flight) if x is not None]
            conns.append(ConnectorReading(
                idx=idx, state=c.state, power_kw=c.power_kw, session_energy_kwh=energy,
                ev_max_kw=c.ev_max_kw, limit_kw=max(limits) if limits else None,
                soc_pct=c.soc_pct, vehicle_id=c.id_tag if c.tx_id is not None else None,
                transaction_id=str(c.tx_id) if c.tx_id is not None else None,
                power_ts=c.power_ts, charge_phases=phases,
                currents_a=None if caps is None else c.phases.currents,
                cap_kw=self._csms_kw(idx) if relayed else None))
        # A charger that switches, limited in A: each profile's limit is A per phase of the
        # count it carries (profiles.py), so the control loop books it as a Modbus charger
        # limited in amps (agent/control/session_phases.py `count`).
        return ChargerReading(tuple(conns), self.cfg.max_power_kw, time.time(),
                              limit_in_amps=caps is not None and self.info.unit == "A",
                              phase_switch_pause_s=None if caps is None else caps.pause_s,
                              cap_kw=self.csms.max_kw(self.cfg) if relayed else None)

    async def set_limit(self, idx: int, kw: float) -> None:
        if not 1 <= idx <= self.connectors:
            raise ValueError(f"connector {idx}: this charger has connectors 1..{self.connectors}")
        if not kw >= 0:
            raise ValueError(f"limit: {kw} kW must be >= 0 (OCPP chargers take no V2G limit)")
        if self.link is None:
            raise DeviceError("disconnected", f"{self.cfg.charge_point_id}: not connected")
        self.conns[idx].want = kw
        self.pacer.request(self)

    async def set_phases(self, idx: int, phases: int) -> None:
        """Switch a connector to 1 or 3 phases: its next profile carries that numberPhases
        (sent at once, as a decrease). Returns before the charger answers, as set_limit:
        the count in effect (`charge_phases`) changes once it accepted and its pause has
        passed (agent/ocpp/phases.py)."""
        if not 1 <= idx <= self.connectors:
            raise ValueError(f"connector {idx}: this charger has connectors 1..{self.connectors}")
        if phases not in (1, 3):
            raise ValueError(f"phases: {phases} is not 1 or 3")
        if self.phase_caps is None:
            raise NotSupported(f"{self.cfg.charge_point_id}: cannot switch phases")
        if self.link is None:
            raise DeviceError("disconnected", f"{self.cfg.charge_point_id}: not connected")
        self.conns[idx].phases.request(phases)
        self.pacer.request(self)

    def request_sample(self, idx: int) -> None:
        """Ask for a meter value of connector `idx` now (TriggerMessage "MeterValues"): the
        control loop holds back a fall of a meter that this connector's stale sample may hide
        until its next sample (agent/control/unseen_drops.py), and counts a raise it has not
        seen followed as undrawn until then (agent/control/controller.py). Useless at a 1 s interval, so
        only above it; not for a connector sampled or asked less than `TRIGGER_GAP_S` ago; a
        charger that refuses once is not asked again on this connection. Returns at once:
        the answer comes later."""
        link, c = self.link, self.conns.get(idx)
        if (link is None or c is None or not self.ready or self.ocpp.meter_interval_s <= 1
                or self._no_trigger):
            return
        now = self._clock()
        if now - self._triggered.get(idx, float("-inf")) < TRIGGER_GAP_S or (
                c.power_ts is not None and time.time() - c.power_ts < TRIGGER_GAP_S):
            return
        self._triggered[idx] = now
        self._spawn(self._trigger(link, idx))

    async def _trigger(self, link: Link, idx: int) -> None:
        try:
            status = await link.trigger_meter_values(idx)
        except Exception as exc:  # a lost answer: asked again after the gap
            log.debug("%s: TriggerMessage MeterValues: %s", self.cfg.charge_point_id, exc)
            return
        if status != "Accepted" and not self._no_trigger:
            self._no_trigger = True
            log.info("%s: TriggerMessage MeterValues %s: not asked again on this connection",
                     self.cfg.charge_point_id, status)

    async def heartbeat(self) -> None:
        if self.link is None:
            raise DeviceError("disconnected", f"{self.cfg.charge_point_id}: not connected")
        if self._renewal_due():
            self.pacer.request(self)

    async def set_fallback(self, kw: float, timeout_s: float) -> None:
        """`kw` per connector (the loop's share), held by the charger once the agent has been
        silent for `timeout_s`. Sent now when connected, else at the next connection."""
        if not kw >= 0 or not timeout_s > 0:
            raise ValueError("fallback: kw must be >= 0 and timeout_s > 0")
        self.max.fallback_kw = kw * self.connectors
        self.max.hold_s = float(timeout_s)
        self.max.dirty = True
        if self.link is not None and self.ready:
            answer = await self._send_max()
            if answer != "Accepted":
                raise DeviceError("rejected", f"max profile: {answer}")

    # ---- connection life ----------------------------------------------------------------
    def attach(self, link: Link) -> None:
        self.link = link
        self.ready = False
        self.info.version = link.version
        self.info.connected = True
        self._health.ok()
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send_loop())
        if self.info.booted_at is not None:
            # Reconnected without a new boot (a network blip): set up again at once.
            self._spawn(self._setup(link))

    def detach(self, link: Link) -> None:
        if self.link is not link:
            return
        self.link = None
        self.ready = False
        self.info.connected = False
        self._no_trigger = False  # a charger may come back with other firmware
        for c in self.conns.values():
            c.in_flight = None
        self._health.failed("disconnected", f"{self.cfg.charge_point_id}: connection closed")

    async def close(self) -> None:
        for task in [*self._tasks, *([self._sender] if self._sender else [])]:
            task.cancel()
        if self.link is not None:
            await self.link.close()

    # ---- what the link reports ----------------------------------------------------------
    def on_boot(self, info: dict) -> None:
        self.info.boot = info
        self.info.booted_at = time.time()
        self.ready = False
        # A rebooted charger may have lost its transactions and profiles: send them again.
        for c in self.conns.values():
            c.tx_id = None
            c.sent_key = None
            c.in_flight = None
            c.phases.reset(self.cfg.phases)
        self.max.dirty = True
        self.max.opened = False

    def booted(self) -> None:
        if self.link is not None:
            self._spawn(self._setup(self.link))

    def on_heartbeat(self) -> None:
        self.info.last_heartbeat = time.time()

    def on_status(self, idx: int, state: str, raw: str) -> None:
        c = self.conns.get(idx)
        if c is not None:
            c.state, c.status = state, raw

    def on_meter(self, idx: int | None, sample: dict[str, float]) -> None:
        if idx is None:
            return
        c = self.conns.get(idx)
        if c is None:
            return
        if "power_kw" in sample:
            c.power_kw = max(0.0, sample["power_kw"])
            c.power_ts = time.time()
        if "energy_kwh" in sample:
            c.energy_kwh = sample["energy_kwh"]
            if c.tx_id is not None and c.start_kwh is None:
                c.start_kwh = sample["energy_kwh"]
        if "soc_pct" in sample:
            c.soc_pct = sample["soc_pct"]
        amps = [sample.get(f"current_l{n}_a") for n in (1, 2, 3)]
        if None not in amps:
            c.phases.observe((amps[0], amps[1], amps[2]))  # type: ignore[arg-type]

    def on_ev_needs(self, idx: int, ev_max_kw: float | None) -> None:
        if idx in self.conns:
            self.conns[idx].ev_max_kw = ev_max_kw

    def on_tx_started(self, idx: int, tx_id: str | int, start_kwh: float | None,
                      id_tag: str | None) -> None:
        c = self.conns.get(idx)
        if c is None:
            return
        c.tx_id, c.start_kwh, c.id_tag = tx_id, start_kwh, id_tag
        c.energy_kwh = start_kwh if start_kwh is not None else c.energy_kwh
        c.sent_key = None

    def on_tx_ended(self, tx_id: str | int, stop_kwh: float | None) -> None:
        for c in self.conns.values():
            if c.tx_id == tx_id:
                if stop_kwh is not None:
                    c.energy_kwh = stop_kwh
                c.tx_id = None
                c.start_kwh = None
                c.sent_key = None  # the TxProfile died with it: TxDefault from now on
                self.csms.tx_ended(tx_id)
                c.power_kw = 0.0
                c.power_ts = time.time()
                self._wake.set()

    def on_security_event(self, kind: str, info: str | None) -> None:
        self.info.security_events.append((time.time(), kind))
        del self.info.security_events[:-20]
        log.warning("%s: security event %s %s", self.cfg.charge_point_id, kind, info or "")

    def profile_due(self, idx: int) -> None:
        """A transaction started: its TxProfile goes out now, at the connector's limit."""
        self._wake.set()

    def csms_changed(self) -> None:
        """The CSMS's profiles changed (local controller mode): resend what they cap."""
        self.max.dirty = True
        for c in self.conns.values():
            c.sent_key = None
        self._wake.set()

    def _stack(self, own: int) -> int:
        return self.ocpp.relay_stack_level if self.ocpp.upstream else own

    def _csms_kw(self, idx: int) -> float | None:
        """The CSMS's limit on connector `idx` now (local controller mode), None: none."""
        c = self.conns[idx]
        return self.csms.connector_kw(idx, c.tx_id, self.cfg, phases=c.phases.want)

    def _capped(self, idx: int, kw: float) -> float:
        """The agent's limit, never above the CSMS's in local controller mode."""
        cap = self._csms_kw(idx)
        return kw if cap is None else min(kw, cap)

    def new_transaction_id(self) -> int:
        return next(self._tx_ids)

    def authorized(self, id_tag: str) -> bool:
        return self.ocpp.authorize == "accept_all" or id_tag in self.ocpp.id_tags

    # ---- sending --------------------------------------------------------------------------
    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _renewal_due(self) -> bool:
        return self._clock() - self.max.sent_at >= self.max.hold_s * RENEW_FRACTION

    # ---- pacing (SendPacer) ---------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def pending(self) -> Due:
        if self.link is None or not self.ready:
            return None
        if self.max.dirty or self._renewal_due():
            return "lower"
        todo = self._todo(self._clock())
        if not todo:
            return None
        return "raise" if all(raising for raising, *_ in todo) else "lower"

    async def _setup(self, link: Link) -> None:
        """After a boot or a reconnection: rate unit, fallback, meter interval, then limits.
        The max profile goes out as soon as its unit is known: until it is in force, a
        charger that never held one from the agent draws as it likes (docs/ocpp.md)."""
        try:
            allowed = None
            if self.cfg.rate_unit is None:
                try:
                    allowed = await link.read_rate_unit()
                except Exception as exc:
                    log.info("%s: rate unit not readable (%s): A", self.cfg.charge_point_id, exc)
            self.info.unit = pick_unit(allowed, self.cfg.rate_unit)
            if self.link is not link:
                return
            await self._send_max()
            try:
                await link.set_meter_interval(self.ocpp.meter_interval_s)
            except Exception as exc:
                log.info("%s: meter interval not set: %s", self.cfg.charge_point_id, exc)
            # After the max profile: a round trip more before it would widen the window in
            # which a charger new to the agent draws as it likes (docs/ocpp.md).
            self.phase_caps = await self._read_phase_caps(link)
            if self.link is not link:
                return
            for c in self.conns.values():
                c.sent_key = None
                if c.want is None:
                    c.want = 0.0  # closed until the agent allocates, as Modbus connectors
            self.ready = True
            self._wake.set()
        except Exception:
            log.exception("%s: set-up after connect failed", self.cfg.charge_point_id)

    async def _read_phase_caps(self, link: Link) -> PhaseCaps | None:
        """Whether it switches phases: 1.6 by the `phase_switching` setting alone (no
        standard key says), 2.0.1 by SmartChargingCtrlr.Phases3to1 unless set off (docs/ocpp.md,
        "Phase switching")."""
        cfg = self.cfg
        if cfg.phase_switching is False or cfg.phases != 3:
            return None
        try:
            can, per_evse = await link.read_phase_switching(self.connectors)
        except Exception as exc:
            log.info("%s: phase switching not readable (%s)", cfg.charge_point_id, exc)
            can, per_evse = None, frozenset()
        if can is False and cfg.phase_switching:
            log.warning("%s: phase_switching is set, but the charger reports Phases3to1 = "
                        "false: not switched", cfg.charge_point_id)
        if can is False or (can is None and not cfg.phase_switching):
            return None
        return PhaseCaps(cfg.phase_switch_pause_s, per_evse)

    def _where(self, idx: int) -> str:
        return f"{self.cfg.charge_point_id}/{idx}"

    async def _send_max(self) -> str:
        link = self.link
        if link is None:
            return "NotConnected"
        unit, m = self.info.unit, self.max
        csms_max = self.csms.max_kw(self.cfg)
        ceiling_kw = self.cfg.max_power_kw if csms_max is None else min(
            self.cfg.max_power_kw, csms_max)
        if not m.opened:  # its connectors' own profiles are not all in yet (MaxProfileState)
            ceiling_kw = min(ceiling_kw, m.fallback_kw)
        ceiling = to_rate(ceiling_kw, unit, self.cfg)
        fallback = to_rate(min(m.fallback_kw, ceiling_kw), unit, self.cfg)
        profile = profiles.max_profile(
            link.version, ceiling, fallback, unit, now=datetime.now(UTC), hold_s=m.hold_s,
            stack_level=self._stack(self.ocpp.max_profile_stack_level),
            number_phases=self.cfg.phases)
        sent = self._clock()
        try:
            m.answer = await link.set_max_profile(profile)
        except Exception as exc:
            m.answer = f"error: {type(exc).__name__}"
        if m.answer == "Accepted":
            m.sent_at = sent
            if m.dirty:
                m.dirty = False
                await self._verify(link, fallback)
        else:
            self._health.value_error("rejected", f"max profile: {m.answer}")
        return m.answer

    async def _verify(self, link: Link, fallback: float) -> None:
        """Ask the charger what it will apply once the hold runs out (GetCompositeSchedule on
        the whole charger); chargers without it leave `verified` None."""
        hold = int(self.max.hold_s)
        try:
            periods = await link.composite(0, hold + VERIFY_MARGIN_S, self.info.unit)
        except Exception as exc:
            log.info("%s: GetCompositeSchedule failed: %s", self.cfg.charge_point_id, exc)
            periods = None
        if periods is None:
            self.max.verified = None
            return
        after = profiles.limit_at(periods, hold + 1)
        self.max.composite_fallback = after
        self.max.verified = after is not None and after <= fallback + 1e-6
        if not self.max.verified:
            log.error("%s: composite schedule gives %s %s after the hold, fallback is %s",
                      self.cfg.charge_point_id, after, self.info.unit, fallback)

    async def _send_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._send_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: sending limits failed", self.cfg.charge_point_id)

    async def _send_due(self) -> None:
        """A changed max profile first, then decreases, a due renewal of the max profile,
        increases (a renewal never holds a decrease back by its round trip)."""
        if self.link is None or not self.ready:
            return
        if self.max.dirty:
            await self._send_max()
        todo = sorted(self._todo(self._clock()))
        for raising, idx, rate, key in todo:
            if raising and self._renewal_due():
                await self._send_max()
            await self._send_one(idx, rate, key)
        if self._renewal_due():
            await self._send_max()

    def _todo(self, now: float) -> list[tuple[bool, int, float, tuple]]:
        """(raising, connector, rate, key) of every limit to send now; a limit that waits on
        its connector's interval sets a wake-up for then instead."""
        todo: list[tuple[bool, int, float, tuple]] = []
        for idx, c in self.conns.items():
            if c.want is None or self.link is None:
                continue
            want = self._capped(idx, c.want)
            phases = c.phases.want
            rate = to_rate(want, self.info.unit, self.cfg, phases)
            key = (c.tx_id, rate, phases)
            if key == c.sent_key:
                continue
            # As the loop counts it: the higher of accepted and in flight (a new limit below
            # an increase still in flight is a decrease, never held back as an increase). A
            # phase switch goes out as a decrease: its limit is 0, the loop waits for it.
            held = [x for x in (c.accepted, c.in_flight) if x is not None]
            switching = c.sent_key is not None and c.sent_key[2] != phases
            lowering = not held or want < max(held) or switching
            fresh_tx = c.sent_key is None or c.sent_key[0] != c.tx_id
            wait = c.sent_at + self.ocpp.min_interval_s - now
            if wait > 0 and not fresh_tx and not (lowering and c.last_answer == "Accepted"):
                self._wake_in(wait)
                continue
            todo.append((not lowering, idx, rate, key))
        return todo

    async def _send_one(self, idx: int, rate: float, key: tuple) -> None:
        link, c, unit, caps = self.link, self.conns[idx], self.info.unit, self.phase_caps
        if link is None:
            return
        phases = key[2]
        kw = from_rate(rate, unit, self.cfg, phases)
        profile = profiles.connector_profile(
            link.version, idx, rate, unit, stack_level=self._stack(self.ocpp.stack_level),
            transaction_id=key[0], number_phases=phases, switching=caps is not None,
            phase_to_use=caps is not None and idx in caps.phase_to_use)
        c.in_flight, c.sent_at, c.last_profile = kw, self._clock(), profile
        start = time.monotonic()
        try:
            answer = await link.set_connector_limit(idx, profile)
        except Exception as exc:
            answer = "Timeout" if isinstance(exc, TimeoutError) else f"error: {exc}"
        c.in_flight = None
        c.last_answer = answer
        c.phases.answered(phases, answer == "Accepted", self._clock(), self._where(idx))
        if answer == "Accepted":
            c.accepted, c.sent_key = kw, key
            if not self.max.opened and all(x.sent_key is not None for x in self.conns.values()):
                self.max.opened = self.max.dirty = True  # the rating, now that each has a limit
                self._wake.set()
            self._health.latency(time.monotonic() - start)
            self._health.ok()
        else:
            kind = "timeout" if answer == "Timeout" else "rejected"
            self._health.value_error(kind, f"connector {idx}: profile {answer}")
            self._wake_in(self.ocpp.min_interval_s)

    def _wake_in(self, delay: float) -> None:
        if self._timer is not None and not self._timer.cancelled():
            return
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timer = None
            self.pacer.request(self)

        self._timer = loop.call_later(max(0.0, delay), fire)

    # ---- for the CLI / API ----------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        i, m = self.info, self.max
        return {
            "chargePointId": self.cfg.charge_point_id, "protocol": "ocpp",
            "version": i.version, "connected": i.connected, "ready": self.ready,
            "boot": i.boot, "bootedAt": i.booted_at, "lastHeartbeat": i.last_heartbeat,
            "rateUnit": i.unit,
            "maxProfile": {"fallbackKw": m.fallback_kw, "holdS": m.hold_s, "answer": m.answer,
                           "verified": m.verified, "compositeFallback": m.composite_fallback,
                           "opened": m.opened},
            "connectors": [
                {"idx": idx, "status": c.status, "transactionId": c.tx_id, "idTag": c.id_tag,
                 "powerKw": c.power_kw, "limitKw": c.accepted, "lastAnswer": c.last_answer,
                 "lastProfile": c.last_profile,
                 "phases": c.phases.effect if self.phase_caps is not None else None}
                for idx, c in self.conns.items()
            ],
            "traffic": self.traffic.summary(),
            "upstream": self.relay.describe() if self.relay is not None else None,
        }
