"""A station whose chargers are known only through the local API ("no hardware configured").

Electra's mode of operation: an integration (OCPP gateway, kiosk) tells the agent about
sessions and what they draw, and the allocation in each response is the limit that reaches
the charger. The same allocator runs as on a hardware station; `cycle()` is one control
step (allocate, then apply decreases before increases out of free headroom), driven every
period by `run()` or by the daemon's loop.

Rules (DESIGN.md "Allocation"):
- A new session gets at once only what is free now: min(its fair share, station headroom,
  charger headroom) given the allocations already handed out. Others are not cut in the
  same instant; the next cycle moves everyone to the max-min fair share (decreases first,
  so the sum never exceeds the budget at any instant).
- A session reporting consumption clearly below its allocation is capped at consumption +
  probe margin (agent.control.caps.CapTracker, the daemon's rule); the freed power goes to
  others next cycle. Drawing up to the cap again lifts it.

Sessions are first-class: their rows, events and uplink messages go through the same
`SessionRecords` as the hardware tracker's (agent/control/session_records.py, `sessions` rows
with source 'api'), so MQTT sees `started` / `updated` / `stopped` like any other session.
- Restart: the `active` 'api' rows are resumed at construction (same id, energy, peak and
  cost so far; announced as `session_resumed`, published as `updated`, never started again).
  Each row keeps the limit last handed out (`limit_kw`, written in the same step that raises
  it, before any answer shows it): the integration keeps applying it while the agent is down,
  so a resumed session counts in the budget with it from the first cycle, and the first cycle
  lowers before it raises, as always. A row without one (older agent) counts at the most it
  may draw. A resumed row on a charger or connector the configuration no longer has is
  stopped ("charger_removed", "connector_removed").
- Silence: a session whose integration has not reported for `silence_s` ([api]
  session_silence_s, 15 min) is stopped ("api_silent"), its allocation freed; a resumed one
  counts its silence from the restart. So no row stays `active` once its integration is gone.
- A clean shutdown stops nothing: rows stay `active`, resumable (`flush()` saves figures).
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import sqlite_utils

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
from agent.control.caps import CapTracker
from agent.control.session_records import EventHook, Session, SessionRecords
from agent.control.stats import CycleStats
from agent.model.clock import Clock, iso

if TYPE_CHECKING:
    from agent.uplink import Uplink

log = logging.getLogger(__name__)
SOURCE = "api"  # the `sessions.source` of this station's rows, and the only ones it resumes
SILENCE_S = 900.0  # default [api] session_silence_s


def _floor2(kw: float) -> float:
    """Round down to 0.01 kW: a limit is never rounded up past what is free."""
    return math.floor(kw * 100 + 1e-9) / 100


@dataclass
class _Session:
    """A session's record (the shared row shape: energy, peak, cost so far) and what this
    station adds: its allocation, the integration's last report, the cap rule's state."""

    rec: Session
    vehicle_max_kw: float
    kind: Literal["charging", "v2g"]
    fleet_id: str | None
    heard_at: float  # monotonic time of its start, last report or resume
    allocated_kw: float = 0.0
    stored_limit_kw: float | None = None  # the allocation its row holds
    consumed_kw: float | None = None
    consumed_at: float | None = None  # monotonic time of the last report
    cap_kw: float | None = None
    binding: str | None = None

    @property
    def id(self) -> str:
        return self.rec.id

    @property
    def charger_id(self) -> str:
        return self.rec.charger_id

    @property
    def idx(self) -> int:
        return self.rec.connector_idx


class ApiStation:
    """An `ApiContext` for chargers known only through the API. Not thread-safe: call it
    from one event loop (the API handlers and `run()` share that loop)."""

    def __init__(
        self,
        config: StationConfig,
        store: sqlite_utils.Database,
        clock: Clock,
        *,
        probe_kw: float = 1.0,
        probe_fraction: float = 0.05,
        signals: Any | None = None,
        planner: Any | None = None,
        import_price: Callable[[datetime], float] | None = None,
        uplink: Uplink | None = None,
        on_event: EventHook | None = None,
        silence_s: float = SILENCE_S,
    ) -> None:
        """`on_event`: the session events' hook (the daemon's `UplinkBridge.enqueue`, as for
        the tracker); `silence_s`: how long a session may go without a report."""
        self._config = config
        self._chargers = [c.model_dump() for c in config.chargers]  # the allocator's form
        self._import_price = import_price  # EUR/kWh at a time (agent.energy.ledger_recorder.prices_at)
        # ApiContext's collaborators, as plain attributes.
        self.store = store
        self.signals = signals
        self.planner = planner
        self._clock = clock
        self._uplink = uplink
        # Reports are explicit measurements, so a cap may apply from the first one.
        self._caps = CapTracker(probe_kw, probe_fraction, cap_after_s=0.0)
        self._sessions: dict[str, _Session] = {}  # insertion order = arrival order
        self._stats = CycleStats()
        self._silence_s = silence_s
        self.records = SessionRecords(store, clock, SOURCE, on_event)
        self._resume()

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
        for session_id in list(self._sessions):
            self._end(session_id, reason="config_replaced")
        self._config = config
        self._chargers = [c.model_dump() for c in config.chargers]

    @property
    def cycles(self) -> int:
        return self._stats.cycles

    # ----- ApiContext: live state -----
    def station_view(self) -> StationView:
        connectors = []
        by_connector = {(s.charger_id, s.idx): s for s in self._sessions.values()}
        for charger in self._config.chargers:
            for idx in range(1, charger.connectors + 1):
                s = by_connector.get((charger.id, idx))
                connectors.append(
                    ConnectorView(
                        charger_id=charger.id,
                        idx=idx,
                        state="occupied" if s else "free",
                        session_id=s.id if s else None,
                        limit_kw=s.allocated_kw if s else 0.0,
                        power_kw=s.consumed_kw if s else None,
                        binding=s.binding if s else None,
                    )
                )
        ev_power = sum(s.consumed_kw or 0.0 for s in self._sessions.values())
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
            cycle_ms=self._stats.summary()["cycle_ms"],
            power_cap_kw=self._power_cap(),
            mode="api",
        )

    def sessions(self) -> list[SessionView]:
        return [self._view(s) for s in self._sessions.values()]

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
        for s in self._sessions.values():
            if s.charger_id == charger_id and s.idx == idx:
                raise ConnectorBusy(f"connector {charger_id}#{idx} is in use by session {s.id}")
        now = self._clock.now()
        rec = Session(id=str(uuid.uuid4()), charger_id=charger_id, connector_idx=idx,
                      started_at=iso(now), vehicle_max_kw=new.vehicle_max_kw,
                      vehicle_id=new.vehicle_id)  # fmt: skip
        session = _Session(rec, new.vehicle_max_kw, new.kind, new.fleet_id,
                           heard_at=self._clock.monotonic())  # fmt: skip
        self._sessions[session.id] = session
        budget = self._budget()
        targets, bindings = self._targets(budget)
        # What it may draw now: its fair share, but never more than is free at this moment.
        session.allocated_kw = _floor2(
            max(0.0, min(targets.get(session.id, 0.0), self._headroom(charger_id, budget)))
        )
        session.binding = bindings.get(session.id)
        session.stored_limit_kw = session.allocated_kw
        self.records.start(rec, now, self._clock.monotonic(), kind=new.kind,
                           fleet_id=new.fleet_id, limit_kw=session.allocated_kw)  # fmt: skip
        return self._view(session)

    def report_consumption(self, session_id: str, consumed_kw: float) -> SessionView:
        s = self._get(session_id)
        t = self._clock.monotonic()
        s.heard_at = t
        rec = s.rec
        if s.consumed_kw is not None and s.consumed_at is not None:
            kwh = s.consumed_kw * max(0.0, t - s.consumed_at) / 3600.0
            rec.energy_kwh += kwh
            if self._import_price is not None:
                rec.cost_eur += kwh * self._import_price(self._clock.now())
        s.consumed_kw, s.consumed_at = consumed_kw, t
        rec.power_kw = consumed_kw
        rec.peak_kw = max(rec.peak_kw, consumed_kw)
        # The daemon's cap rule, fed with each report (a report is a fresh measurement).
        s.cap_kw = self._caps.update(s.id, consumed_kw, s.allocated_kw, 0.0, t)
        if s.cap_kw is not None:
            # A decrease of its own limit is always safe, so it applies at once.
            s.allocated_kw = _floor2(min(s.allocated_kw, s.cap_kw))
        s.stored_limit_kw = s.allocated_kw
        self.records.persist(rec, t, limit_kw=s.allocated_kw)
        return self._view(s)

    def stop_session(self, session_id: str) -> None:
        self._get(session_id)
        self._end(session_id, reason="api")  # as a local API stop on a hardware station

    def active_records(self) -> list[Session]:
        """The active sessions' records (the uplink's periodic `updated` messages)."""
        return [s.rec for s in self._sessions.values()]

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
        self.records.flush([s.rec for s in self._sessions.values()])

    # ----- the control step -----
    def cycle(self) -> None:
        """Allocate and apply: decreases first, then increases out of what is free."""
        t0 = self._clock.monotonic()
        self._stop_silent(t0)
        budget = self._budget()
        targets, bindings = self._targets(budget)
        sessions = [(s, _floor2(targets.get(s.id, 0.0))) for s in self._sessions.values()]
        for s, target in sessions:
            s.binding = bindings.get(s.id)
            if target < s.allocated_kw:
                s.allocated_kw = target
        for s, target in sessions:
            if target > s.allocated_kw:
                free = self._headroom(s.charger_id, budget)
                s.allocated_kw = _floor2(min(target, s.allocated_kw + free))
        self._save_limits(t0)
        self._stats.record_cycle(self._clock.monotonic() - t0, math.inf)

    async def run(self, period_s: float, stop: asyncio.Event) -> None:
        """Drive `cycle()` every period until `stop` is set (the no-hardware control loop)."""
        deadline = self._clock.monotonic()
        while not stop.is_set():
            self.cycle()
            deadline += period_s
            if deadline < self._clock.monotonic():  # overrun: do not try to catch up
                deadline = self._clock.monotonic()
            await self._clock.sleep_until(deadline)

    # ----- internals -----
    def _resume(self) -> None:
        """The `active` rows of this source: sessions the integration is still running."""
        now, t = self._clock.now(), self._clock.monotonic()
        for row in self.records.active_rows():
            rec = Session(id=row["id"], charger_id=row["charger_id"],
                          connector_idx=row["connector_idx"], started_at=row["started_at"],
                          energy_kwh=row["energy_kwh"], peak_kw=row["peak_kw"],
                          vehicle_max_kw=row["vehicle_max_kw"], vehicle_id=row["vehicle_id"],
                          cost_eur=row["cost_eur"])  # fmt: skip
            charger = self._config.charger(rec.charger_id)
            reason = self._unplaceable(rec)
            if charger is None or reason is not None:
                log.warning("API session %s on %s#%d stopped at start: %s", rec.id,
                            rec.charger_id, rec.connector_idx, reason)  # fmt: skip
                self.records.stop(rec, now, reason or "charger_removed", t)
                continue
            vehicle_max = rec.vehicle_max_kw if rec.vehicle_max_kw is not None else charger.maxPower
            most = min(vehicle_max, charger.maxPower)
            # Its limit in force: the one last handed out, or (unknown) the most it may draw.
            limit = row["limit_kw"]
            allocated = most if limit is None else min(limit, most)
            kind: Literal["charging", "v2g"] = "v2g" if row["kind"] == "v2g" else "charging"
            s = _Session(rec, vehicle_max, kind, row["fleet_id"], heard_at=t,
                         allocated_kw=max(0.0, allocated), stored_limit_kw=limit)  # fmt: skip
            self._sessions[s.id] = s
            self.records.announce("session_resumed", rec, now, t)
        if self._sessions:
            log.info("%d API sessions resumed", len(self._sessions))

    def _unplaceable(self, rec: Session) -> str | None:
        """Why a resumed session cannot go on in this configuration, if it cannot."""
        charger = self._config.charger(rec.charger_id)
        if charger is None:
            return "charger_removed"
        if not 1 <= rec.connector_idx <= charger.connectors:
            return "connector_removed"
        if any(s.charger_id == rec.charger_id and s.idx == rec.connector_idx
               for s in self._sessions.values()):  # fmt: skip
            return "connector_taken"  # two active rows on one connector: the older one goes on
        return None

    def _stop_silent(self, t: float) -> None:
        """Stop the sessions whose integration has not reported for `silence_s`."""
        for s in list(self._sessions.values()):
            if t - s.heard_at >= self._silence_s:
                log.warning("API session %s on %s#%d stopped: no report for %.0f s", s.id,
                            s.charger_id, s.idx, t - s.heard_at)  # fmt: skip
                self._end(s.id, reason="api_silent")

    def _save_limits(self, t: float) -> None:
        """Store the allocations this step changed, in one transaction: a restart resumes
        each session with the limit its integration applies."""
        with self.records.deferred():
            for s in self._sessions.values():
                if s.allocated_kw != s.stored_limit_kw:
                    s.stored_limit_kw = s.allocated_kw
                    self.records.persist(s.rec, t, limit_kw=s.allocated_kw)
        self.records.flush_writes(t)

    def _power_cap(self) -> float | None:
        if self.signals is None:
            return None
        cap: float | None = self.signals.active_power_cap(self._clock.now())
        return cap

    def _budget(self) -> float:
        capacity = self._config.gridCapacity
        cap = self._power_cap()
        if cap is not None:
            capacity = min(capacity, cap)
        return capacity - (self._config.baseLoad or 0.0)

    def _request(self, budget: float) -> dict[str, Any]:
        return {
            "stationId": self._config.stationId,
            "gridCapacity": max(0.0, budget),
            "chargers": self._chargers,
            "sessions": [
                {
                    "sessionId": s.id,
                    "connectorId": {"chargerId": s.charger_id, "idx": s.idx},
                    "vehicleMaxPower": s.vehicle_max_kw,
                    **({"powerCap": s.cap_kw} if s.cap_kw is not None else {}),
                }
                for s in self._sessions.values()
            ],
        }

    def _targets(self, budget: float) -> tuple[dict[str, float], dict[str, str]]:
        if not self._sessions:
            return {}, {}
        result = allocator.allocate(self._request(budget))
        return result["allocations"], result.get("binding", {})

    def _headroom(self, charger_id: str, budget: float) -> float:
        """Power free now at the station (`budget`: `_budget()`, read once per step) and on
        this charger, given current allocations."""
        station_used = sum(s.allocated_kw for s in self._sessions.values())
        charger = self._config.charger(charger_id)
        charger_used = sum(
            s.allocated_kw for s in self._sessions.values() if s.charger_id == charger_id
        )
        charger_free = (charger.maxPower if charger else 0.0) - charger_used
        return max(0.0, min(budget - station_used, charger_free))

    def _get(self, session_id: str) -> _Session:
        s = self._sessions.get(session_id)
        if s is None:
            raise UnknownSession(f"unknown session id {session_id!r}")
        return s

    def _end(self, session_id: str, *, reason: str) -> None:
        s = self._sessions.pop(session_id)
        self._caps.forget(self._sessions)
        self.records.stop(s.rec, self._clock.now(), reason, self._clock.monotonic())

    def _view(self, s: _Session) -> SessionView:
        return SessionView(
            session_id=s.id,
            charger_id=s.charger_id,
            idx=s.idx,
            allocated_kw=s.allocated_kw,
            vehicle_max_kw=s.vehicle_max_kw,
            consumed_kw=s.consumed_kw,
            source="api",
            kind=s.kind,
            started_at=s.rec.started_at,
            energy_kwh=round(s.rec.energy_kwh, 6),
            cost_eur=round(s.rec.cost_eur, 4),
            binding=s.binding,
            vehicle_id=s.rec.vehicle_id,
            fleet_id=s.fleet_id,
        )
