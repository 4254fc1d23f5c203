"""A station whose chargers are known only through the local API, run by the daemon's own
controller on virtual devices (issue 11, "One station").

Electra's mode of operation: an integration (OCPP gateway, kiosk) tells the agent about
sessions and what they draw, and the allocation in each answer is the limit that reaches
the charger. Here the chargers of `POST /station/config` are `VirtualCharger`s and the grid
meter a `VirtualMeter` (agent/control/virtual.py: occupancy and draw are what the
integration reports, the limit written is what the API answers, the import is the
configured base load plus the reported draws). A `ControlLoop` assembled as the daemon's
(agent/app/assembly.py; its `Controller`, agent/control/controller.py) cycles for them, with
the same allocator, caps, plausibility checks, start-up gate and decrease-first apply rule as
a hardware station's, and one `SessionTracker` (source 'api') keeps their sessions.

What the API adds to the controller's rules:
- A new session gets at once only what is free now: min(its fair share, the station's
  headroom, its charger's headroom), headroom as the controller's apply rule counts it
  (capacity - margin - import - what limits allow above the draw: agent/control/apply.py)
  given the limits already handed out. Others are not cut in the same instant; the next
  cycles move everyone to the max-min fair share, decreases first.
- A consumption report feeds the controller's cap rule at once (a report is a fresh
  measurement, so a cap may apply from the first one); a cap lowering the session's own
  limit is answered at once (a decrease is always safe).
- The controller runs with no headroom margin, no deadband and no limit-follow delay (the
  virtual meter is exact and a write costs nothing; the integration applies an answer as it
  reads it) and no minimum power (Electra's chargers declare none).

Sessions keep the id, vehicle maximum, kind, fleet and vehicle id the API gave them; their
rows (source 'api') hold the limit last handed out (`limit_kw`, written in the step that
changes it). Restart: the `active` 'api' rows are resumed (same id, energy, cost; announced
as `session_resumed`), each counting in the budget with its stored limit from the first
cycle (the integration kept applying it; a row without one counts at the most it may draw);
one on a charger or connector the configuration no longer has is stopped ("charger_removed",
"connector_removed"). A session whose integration has not reported for `silence_s` is
stopped ("api_silent"; a resumed one counts its silence from the restart); a new station
configuration stops every session ("config_replaced"). A clean shutdown stops nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import sqlite_utils
from pydantic import ValidationError

import allocator
from agent.api.context import (
    ConnectorBusy,
    ConnectorView,
    DependencyState,
    DeviceView,
    NewSession,
    NotFound,
    SessionView,
    StationView,
    UnknownConnector,
    UnknownSession,
    UplinkView,
    broker_state,
    uplink_view,
)
from agent.api.models import StationConfig
from agent.config.settings import AgentSettings, ChargerSettings
from agent.control.decision import Decision
from agent.control.session_records import EventHook, Session
from agent.control.sessions import SessionTracker
from agent.control.virtual import VirtualCharger, VirtualDevices, floor2
from agent.model.clock import Clock, iso

if TYPE_CHECKING:
    from agent.uplink import Uplink

log = logging.getLogger(__name__)
SOURCE = "api"  # the `sessions.source` of this station's rows, and the only ones it resumes
SILENCE_S = 900.0  # default [api] session_silence_s
METER = "api:meter"



def template(config: StationConfig, *, probe_kw: float = 1.0,
             probe_fraction: float = 0.05) -> AgentSettings:  # fmt: skip
    """Settings for a station configured only through the API (tests, and the daemon's
    defaults for what the API does not say)."""
    return AgentSettings(
        station={"id": config.stationId, "grid_capacity_kw": max(config.gridCapacity, 1e-9),
                 "grid_meter": METER, "pessimistic_base_load_kw": config.baseLoad or 0.0},
        control={"probe_margin_kw": probe_kw, "probe_margin_fraction": probe_fraction},
    )  # fmt: skip


def station_settings(base: AgentSettings, config: StationConfig) -> AgentSettings:
    """`base` with the station of `config`: its chargers as virtual devices, its capacity,
    its base load in place of a meter, and the control rules of API chargers."""
    chargers = [ChargerSettings.model_construct(
        id=c.id, device=f"api:{c.id}", max_power_kw=c.maxPower, connectors=c.connectors,
        min_power_kw=0.0, fallback_kw=None, v2g=False, circuit=None, phases=3,
        phase_rotation="L1L2L3", max_current_a=None) for c in config.chargers]  # fmt: skip
    station = base.station.model_copy(update={
        "id": config.stationId, "grid_capacity_kw": config.gridCapacity,
        "grid_meter": METER, "pessimistic_base_load_kw": config.baseLoad or 0.0,
        "pv_inverter": None, "chargers": chargers, "battery": None, "circuits": []})  # fmt: skip
    control = base.control.model_copy(update={
        "headroom_margin_kw": 0.0, "deadband_kw": 0.0, "limit_follow_s": 0.0,
        "cap_after_s": 0.0})  # fmt: skip
    return base.model_copy(update={"station": station, "control": control, "devices": []})


@dataclass(slots=True)
class _Api:
    """What the API adds to a tracked session."""

    kind: Literal["charging", "v2g"]
    fleet_id: str | None
    heard_at: float  # monotonic time of its start, last report or resume
    stored_limit_kw: float | None = None  # the limit its row holds
    reported: bool = False  # a consumption report arrived
    binding: str | None = None


class VirtualStation:
    """An `ApiContext` for chargers known only through the API. Not thread-safe: call it
    from one event loop (the API handlers and the cycle share that loop)."""

    def __init__(
        self,
        config: StationConfig,
        store: sqlite_utils.Database,
        clock: Clock,
        *,
        settings: AgentSettings | None = None,
        signals: Any | None = None,
        planner: Any | None = None,
        import_price: Callable[[datetime], float] | None = None,
        uplink: Uplink | None = None,
        on_event: EventHook | None = None,
        silence_s: float = SILENCE_S,
    ) -> None:
        """`settings`: the daemon's (control rules, probe margins) or `template(config)`;
        `on_event`: the session events' hook (the daemon's `UplinkBridge.enqueue`)."""
        self._base = settings if settings is not None else template(config)
        self.store = store
        self.signals = signals
        self.planner = planner
        self._clock = clock
        self._uplink = uplink
        self._silence_s = silence_s
        self.tracker = SessionTracker(store, clock, on_event, import_price=import_price,
                                      source=SOURCE)  # fmt: skip
        self._api: dict[str, _Api] = {}
        self._decision: Decision | None = None
        self._start(config)
        self._resume()

    def _start(self, config: StationConfig) -> None:
        """The devices and control loop of the configuration the station starts with: the
        daemon's control loop, assembled as for a hardware station (agent/app/assembly.py),
        over the virtual devices and this station's session tracker."""
        from agent.app.assembly import build_control

        self._config = config
        self.settings = station_settings(self._base, config)
        self.virtual = VirtualDevices(self.settings, self._clock)
        self.control = build_control(self.settings, self.store, self.virtual,  # type: ignore[arg-type]
                                     self._clock, signals=self.signals, sessions=self.tracker,
                                     energy=False)  # fmt: skip
        self.controller = self.control.controller

    def _configure(self, config: StationConfig) -> None:
        """A new configuration, once its sessions are stopped: the same loop and devices,
        with the new chargers and a controller for them."""
        self._config = config
        self.settings = station_settings(self._base, config)
        self.virtual.configure(self.settings)
        self.control.replace_station(self.settings, self.controller.for_station(self.settings))
        self.controller = self.control.controller
        self._decision = None

    def now(self) -> datetime:
        return self._clock.now()

    def battery(self) -> dict[str, Any] | None:
        return None  # chargers only: no stationary battery in this mode

    def savings(self) -> dict[str, Any] | None:
        return None  # no meter, so no ledger: savings need measured import

    def plan_view(self) -> dict[str, Any] | None:
        return None  # no rolling plan without a meter; optimisations run on request

    # ----- ApiContext: configuration -----
    def station_config(self) -> StationConfig:
        return self._config

    def replace_station_config(self, config: StationConfig) -> None:
        # Electra drops every session on a new config; their connectors may no longer exist.
        for s in list(self.tracker.active.values()):
            self._end(s, reason="config_replaced")
        self._configure(config)

    @property
    def cycles(self) -> int:
        return self.control.stats.cycles

    # ----- ApiContext: live state -----
    def _charger(self, charger_id: str) -> VirtualCharger:
        ch: VirtualCharger = self.virtual.chargers[charger_id]
        return ch

    def _limit(self, s: Session) -> float:
        return self._charger(s.charger_id).connector(s.connector_idx).limit_kw or 0.0

    def station_view(self) -> StationView:
        connectors = []
        active = self.tracker.active
        for charger in self._config.chargers:
            vch = self._charger(charger.id)
            for idx in range(1, charger.connectors + 1):
                s = active.get((charger.id, idx))
                c = vch.connector(idx)
                api = self._api.get(s.id) if s else None
                connectors.append(
                    ConnectorView(
                        charger_id=charger.id,
                        idx=idx,
                        state="occupied" if s else "free",
                        session_id=s.id if s else None,
                        limit_kw=(c.limit_kw or 0.0) if s else 0.0,
                        power_kw=c.power_kw if api and api.reported else None,
                        binding=api.binding if api else None,
                    )
                )
        ev_power = sum(c.power_kw or 0.0 for c in connectors)
        return StationView(
            station_id=self._config.stationId,
            ts=iso(self._clock.now()),
            grid_capacity_kw=self._config.gridCapacity,
            grid_power_kw=None,  # no meter in this mode
            base_load_kw=self._config.baseLoad,
            pv_power_kw=None,
            battery_soc=None,
            battery_power_kw=None,
            ev_power_kw=round(ev_power, 3),
            connectors=tuple(connectors),
            cycles=self.cycles,
            cycle_ms=self.control.stats.summary()["cycle_ms"],
            power_cap_kw=self._power_cap(),
            mode="api",
        )

    def sessions(self) -> list[SessionView]:
        return [self._view(s) for s in self._arrivals()]

    def devices(self) -> list[DeviceView]:
        return []  # no hardware in this mode

    def ocpp_log(self, charge_point_id: str, limit: int) -> list[dict[str, Any]]:
        raise NotFound(f"no OCPP charger {charge_point_id!r}: chargers known through the API only")

    def dependencies(self) -> list[DependencyState]:
        try:
            self.store.execute("SELECT 1").fetchone()
            store = DependencyState("store", "ok")
        except Exception as exc:  # the health endpoint must answer even when SQLite fails
            store = DependencyState("store", "down", str(exc))
        return [
            DependencyState("devices", "disabled", "no hardware configured: chargers via API"),
            broker_state(self._uplink),
            store,
        ]

    def uplink(self) -> UplinkView | None:
        if self._uplink is None:
            return None
        return uplink_view(self._uplink, None)

    # ----- ApiContext: sessions -----
    def create_session(self, new: NewSession) -> SessionView:
        charger_id, idx = new.charger_id, new.idx
        charger = self._config.charger(charger_id)
        if charger is None:
            raise UnknownConnector(f"connectorId.chargerId: unknown charger {charger_id!r}")
        if not 1 <= idx <= charger.connectors:
            raise UnknownConnector(
                f"connectorId.idx: charger {charger_id!r} has connectors 1..{charger.connectors}"
            )
        busy = self.tracker.active.get((charger_id, idx))
        if busy is not None:
            raise ConnectorBusy(f"connector {charger_id}#{idx} is in use by session {busy.id}")
        t, now = self._clock.monotonic(), self._clock.now()
        s = Session(id=str(uuid.uuid4()), charger_id=charger_id, connector_idx=idx,
                    started_at=iso(now), vehicle_max_kw=new.vehicle_max_kw,
                    vehicle_id=new.vehicle_id)  # fmt: skip
        # What it may draw now: its fair share, but never more than is free at this moment.
        share, binding = self._fair_share(s)
        limit = floor2(max(0.0, min(share, self._station_free(), self._charger_free(charger_id))))
        self._charger(charger_id).plug(idx, s.id, vehicle_max_kw=new.vehicle_max_kw,
                                       vehicle_id=new.vehicle_id, limit_kw=limit)  # fmt: skip
        self._api[s.id] = _Api(new.kind, new.fleet_id, heard_at=t, stored_limit_kw=limit,
                               binding=binding)  # fmt: skip
        self.tracker.begin(s, kind=new.kind, fleet_id=new.fleet_id, limit_kw=limit)
        return self._view(s)

    def report_consumption(self, session_id: str, consumed_kw: float) -> SessionView:
        s = self._get(session_id)
        api = self._api[s.id]
        t = self._clock.monotonic()
        api.heard_at = t
        api.reported = True
        vch = self._charger(s.charger_id)
        vch.report(s.connector_idx, consumed_kw, t)
        conn = vch.connector(s.connector_idx)
        limit = conn.limit_kw or 0.0
        # The controller's cap rule, fed with the report as it arrives (the cycle sees the
        # same sample again and changes nothing: CapTracker's `sample_t`).
        cap = self.controller.caps.update(s.id, consumed_kw, limit, 0.0, t, sample_t=t)
        if cap is not None and cap < limit:  # lowering its own limit is always safe: now
            vch.write_limit(s.connector_idx, floor2(cap))
            self.controller.limits[(s.charger_id, s.connector_idx)] = conn.limit_kw
        api.stored_limit_kw = conn.limit_kw
        self.tracker.reported(s.id, consumed_kw, conn.energy_kwh, limit_kw=conn.limit_kw)
        return self._view(s)

    def stop_session(self, session_id: str) -> None:
        self._end(self._get(session_id), reason="api")  # as a local API stop on a hardware station

    def active_records(self) -> list[Session]:
        """The active sessions' records (the uplink's periodic `updated` messages)."""
        return self._arrivals()

    def telemetry_connectors(self) -> list[dict[str, Any]]:
        """Each connector's allocation, reported draw and session for the uplink's telemetry
        (the shape of `StationState.telemetry()["connectors"]`; no IEC 61851 state: the
        integration does not report one)."""
        return [{"chargerId": c.charger_id, "idx": c.idx, "state": None, "power": c.power_kw,
                 "limit": c.limit_kw, "sessionId": c.session_id}
                for c in self.station_view().connectors]  # fmt: skip

    def flush(self) -> None:
        """Save every session's figures now (clean shutdown: the rows stay `active`, to be
        resumed). Raises if the store refuses."""
        self.tracker.flush()

    # ----- the control step -----
    async def cycle(self) -> Decision:
        """One control cycle: silent sessions stopped, then the control loop's cycle over
        the virtual devices (agent/control/loop.py `cycle_now`: read, decide, write
        decreases before increases and, in the same cycle, the increases they held back;
        record), and what changed stored. Nothing in it is awaited: no API handler runs in
        the middle of it."""
        t0 = self._clock.monotonic()
        self._stop_silent(t0)
        decision = await self.control.cycle()
        for s in self.tracker.active.values():  # the limits in force: what was written
            self.controller.limits[(s.charger_id, s.connector_idx)] = self._limit(s)
            api = self._api.get(s.id)
            if api is not None:
                api.binding = decision.binding.get(s.id)
        self._decision = decision
        self._save_limits(t0)
        return decision

    async def run(self, period_s: float, stop: asyncio.Event) -> None:
        """Drive `cycle()` every period until `stop` is set (the daemon runs it as a task;
        tests and tools too)."""
        deadline = self._clock.monotonic()
        while not stop.is_set():
            try:
                await self.cycle()
            except Exception:  # as the daemon's loop: logged, and the next cycle runs
                log.exception("API station: control cycle failed")
            deadline += period_s
            if deadline < self._clock.monotonic():  # overrun: do not try to catch up
                deadline = self._clock.monotonic()
            await self._clock.sleep_until(deadline)

    # ----- internals -----
    def _arrivals(self) -> list[Session]:
        """Active sessions in arrival order (the order the API created or resumed them)."""
        active = {s.id: s for s in self.tracker.active.values()}
        return [active[sid] for sid in self._api if sid in active]

    def _resume(self) -> None:
        """The sessions the tracker resumed from the store: the integration still runs them."""
        now, t = self._clock.now(), self._clock.monotonic()
        rows = {r["id"]: r for r in self.tracker.records.active_rows()}
        for row in rows.values():
            s = self.tracker.by_id(row["id"])
            if s is None:
                continue  # stopped by the tracker already (two rows on one connector)
            charger = self._config.charger(s.charger_id)
            reason = None
            if charger is None:
                reason = "charger_removed"
            elif not 1 <= s.connector_idx <= charger.connectors:
                reason = "connector_removed"
            if charger is None or reason is not None:
                log.warning("API session %s on %s#%d stopped at start: %s", s.id,
                            s.charger_id, s.connector_idx, reason)  # fmt: skip
                self.tracker.stop(s.id, reason, latch=False)
                continue
            vehicle_max = s.vehicle_max_kw if s.vehicle_max_kw is not None else charger.maxPower
            most = min(vehicle_max, charger.maxPower)
            # Its limit in force: the one last handed out, or (unknown) the most it may draw.
            limit = row["limit_kw"]
            allocated = max(0.0, most if limit is None else min(limit, most))
            kind: Literal["charging", "v2g"] = "v2g" if row["kind"] == "v2g" else "charging"
            self._charger(s.charger_id).plug(s.connector_idx, s.id, vehicle_max_kw=vehicle_max,
                                             vehicle_id=s.vehicle_id, energy_kwh=s.energy_kwh,
                                             limit_kw=allocated)  # fmt: skip
            self.controller.limits[(s.charger_id, s.connector_idx)] = allocated
            self._api[s.id] = _Api(kind, row["fleet_id"], heard_at=t, stored_limit_kw=limit)
            self.tracker.records.announce("session_resumed", s, now, t)
        if self._api:
            log.info("%d API sessions resumed", len(self._api))

    def _stop_silent(self, t: float) -> None:
        """Stop the sessions whose integration has not reported for `silence_s`."""
        for s in self._arrivals():
            heard = self._api[s.id].heard_at
            if t - heard >= self._silence_s:
                log.warning("API session %s on %s#%d stopped: no report for %.0f s", s.id,
                            s.charger_id, s.connector_idx, t - heard)  # fmt: skip
                self._end(s, reason="api_silent")

    def _save_limits(self, t: float) -> None:
        """Store the limits this step changed, in one transaction: a restart resumes each
        session with the limit its integration applies."""
        records = self.tracker.records
        with records.deferred():
            for s in self._arrivals():
                api = self._api[s.id]
                limit = self._limit(s)
                if limit != api.stored_limit_kw:
                    api.stored_limit_kw = limit
                    records.persist(s, t, limit_kw=limit)
        records.flush_writes(t)

    def _power_cap(self) -> float | None:
        if self.signals is None:
            return None
        cap: float | None = self.signals.active_power_cap(self._clock.now())
        return cap

    def _ceiling(self) -> float:
        """The station's ceiling as the controller has it: capacity, a power cap in force."""
        ceiling = self._config.gridCapacity
        cap = self._power_cap()
        return ceiling if cap is None else min(ceiling, cap)

    def _fair_share(self, new: Session) -> tuple[float, str | None]:
        """The newcomer's max-min fair share with every active session, under the caps the
        controller holds (its allocator, its inputs)."""
        ctl = self.controller
        budget = max(0.0, self._ceiling() - self.settings.control.headroom_margin_kw)
        sessions = [*self._arrivals(), new]
        request = {
            "stationId": self._config.stationId,
            "gridCapacity": max(0.0, budget - (self._config.baseLoad or 0.0)),
            "chargers": [c.model_dump() for c in self._config.chargers],
            "sessions": [
                {"sessionId": s.id, "connectorId": {"chargerId": s.charger_id, "idx": s.connector_idx},
                 "vehicleMaxPower": s.vehicle_max_kw if s.vehicle_max_kw is not None
                 else self._config.charger(s.charger_id).maxPower,  # type: ignore[union-attr]
                 **({"powerCap": cap} if (cap := ctl.caps.cap(s.id)) is not None else {})}
                for s in sessions
            ],
        }  # fmt: skip
        result = allocator.allocate(request)
        return result["allocations"].get(new.id, 0.0), result.get("binding", {}).get(new.id)

    def _station_free(self) -> float:
        """The apply rule's headroom now: capacity - margin - import - what the limits in
        force allow above the draw (agent/control/apply.py), from the virtual meter."""
        import_kw = self.virtual.meter.power_kw()
        outstanding = sum(max(0.0, self._limit(s) - self._draw(s)) for s in self._arrivals())
        return self._ceiling() - self.settings.control.headroom_margin_kw - import_kw - outstanding

    def _charger_free(self, charger_id: str) -> float:
        used = sum(self._limit(s) for s in self._arrivals() if s.charger_id == charger_id)
        return self._config.charger(charger_id).maxPower - used  # type: ignore[union-attr]

    def _draw(self, s: Session) -> float:
        return self._charger(s.charger_id).connector(s.connector_idx).draw_kw()

    def _get(self, session_id: str) -> Session:
        s = self.tracker.by_id(session_id)
        if s is None or session_id not in self._api:
            raise UnknownSession(f"unknown session id {session_id!r}")
        return s

    def _end(self, s: Session, *, reason: str) -> None:
        self.tracker.stop(s.id, reason, latch=False)
        self._api.pop(s.id, None)
        self._charger(s.charger_id).unplug(s.connector_idx)
        self.controller.limits[(s.charger_id, s.connector_idx)] = 0.0
        self.controller.caps.forget(self._api)

    def _view(self, s: Session) -> SessionView:
        api = self._api[s.id]
        conn = self._charger(s.charger_id).connector(s.connector_idx)
        return SessionView(
            session_id=s.id,
            charger_id=s.charger_id,
            idx=s.connector_idx,
            allocated_kw=conn.limit_kw or 0.0,
            vehicle_max_kw=s.vehicle_max_kw,
            consumed_kw=conn.power_kw if api.reported else None,
            source="api",
            kind=api.kind,
            started_at=s.started_at,
            energy_kwh=round(s.energy_kwh, 6),
            cost_eur=round(s.cost_eur, 4),
            binding=api.binding,
            vehicle_id=s.vehicle_id,
            fleet_id=api.fleet_id,
        )


META_KEY = "api_station_config"  # the `meta` row holding the configuration last POSTed


class StoredVirtualStation(VirtualStation):
    """The station with API chargers as the daemon runs it: the chargers declared through
    the local API (Electra's `POST /station/config`) are kept in the store's `meta` table, so
    a restart serves the same chargers; the grid capacity and base load start from
    `[station]`, the control rules (probe margins) from `[control]`."""

    @classmethod
    def open(
        cls,
        settings: AgentSettings,
        db: sqlite_utils.Database,
        clock: Clock,
        *,
        signals: Any | None = None,
        uplink: Uplink | None = None,
        on_event: EventHook | None = None,
    ) -> StoredVirtualStation:
        """`on_event`: the session events' hook (the daemon's uplink bridge)."""
        st = settings.station
        config = StationConfig(
            stationId=st.id, gridCapacity=st.grid_capacity_kw,
            baseLoad=st.pessimistic_base_load_kw,
        )  # fmt: skip
        row = db.execute("SELECT value FROM meta WHERE key = ?", [META_KEY]).fetchone()
        if row is not None:
            try:
                config = StationConfig.model_validate(json.loads(row[0]))
            except (ValueError, ValidationError) as exc:
                log.warning("stored API station configuration ignored: %s", exc)
        from agent.energy.tariffs import prices_at

        return cls(config, db, clock, settings=settings, signals=signals, uplink=uplink,
                   import_price=lambda ts: prices_at(settings.tariff, signals, ts)[0],
                   on_event=on_event, silence_s=settings.api.session_silence_s)  # fmt: skip

    def replace_station_config(self, config: StationConfig) -> None:
        with self.store.conn:
            self.store.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                [META_KEY, config.model_dump_json()],
            )
        super().replace_station_config(config)
