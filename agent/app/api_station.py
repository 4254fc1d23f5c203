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

Sessions are also recorded in the store's `sessions` table (source 'api') so history,
analytics and the uplink see them like hardware sessions.
"""

from __future__ import annotations

import asyncio
import json
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
)
from agent.api.models import StationConfig
from agent.control.caps import CapTracker
from agent.control.stats import CycleStats
from agent.model.clock import Clock, iso

if TYPE_CHECKING:
    from agent.uplink import Uplink


def _floor2(kw: float) -> float:
    """Round down to 0.01 kW: a limit is never rounded up past what is free."""
    return math.floor(kw * 100 + 1e-9) / 100


@dataclass
class _Session:
    id: str
    charger_id: str
    idx: int
    vehicle_max_kw: float
    kind: Literal["charging", "v2g"]
    vehicle_id: str | None
    fleet_id: str | None
    started_at: str
    allocated_kw: float = 0.0
    consumed_kw: float | None = None
    consumed_at: float | None = None  # monotonic time of the last report
    cap_kw: float | None = None
    binding: str | None = None
    energy_kwh: float = 0.0
    peak_kw: float = 0.0
    cost_eur: float = 0.0  # each reported kWh at the import price in force


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
    ) -> None:
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
        stats = self._uplink.outbox.stats()
        return UplinkView(connected=self._uplink.status.connected, outbox_rows=stats.depth,
                          outbox_bytes=stats.bytes, dropped=stats.dropped, last_ack=None)  # fmt: skip

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
        session = _Session(
            id=str(uuid.uuid4()),
            charger_id=charger_id,
            idx=idx,
            vehicle_max_kw=new.vehicle_max_kw,
            kind=new.kind,
            vehicle_id=new.vehicle_id,
            fleet_id=new.fleet_id,
            started_at=iso(now),
        )
        self._sessions[session.id] = session
        budget = self._budget()
        targets, bindings = self._targets(budget)
        # What it may draw now: its fair share, but never more than is free at this moment.
        session.allocated_kw = _floor2(
            max(0.0, min(targets.get(session.id, 0.0), self._headroom(charger_id, budget)))
        )
        session.binding = bindings.get(session.id)
        self.store.table("sessions").insert(
            {
                "id": session.id,
                "charger_id": charger_id,
                "connector_idx": idx,
                "status": "active",
                "kind": new.kind,
                "source": "api",
                "started_at": session.started_at,
                "vehicle_max_kw": new.vehicle_max_kw,
                "vehicle_id": new.vehicle_id,
                "fleet_id": new.fleet_id,
                "updated_at": session.started_at,
            }
        )
        self._event("session_started", session.id, {"charger": charger_id, "idx": idx})
        return self._view(session)

    def report_consumption(self, session_id: str, consumed_kw: float) -> SessionView:
        s = self._get(session_id)
        t = self._clock.monotonic()
        if s.consumed_kw is not None and s.consumed_at is not None:
            kwh = s.consumed_kw * max(0.0, t - s.consumed_at) / 3600.0
            s.energy_kwh += kwh
            if self._import_price is not None:
                s.cost_eur += kwh * self._import_price(self._clock.now())
        s.consumed_kw, s.consumed_at = consumed_kw, t
        s.peak_kw = max(s.peak_kw, consumed_kw)
        # The daemon's cap rule, fed with each report (a report is a fresh measurement).
        s.cap_kw = self._caps.update(s.id, consumed_kw, s.allocated_kw, 0.0, t)
        if s.cap_kw is not None:
            # A decrease of its own limit is always safe, so it applies at once.
            s.allocated_kw = _floor2(min(s.allocated_kw, s.cap_kw))
        self.store.table("sessions").update(
            s.id,
            {
                "energy_kwh": round(s.energy_kwh, 6),
                "peak_kw": s.peak_kw,
                "cost_eur": round(s.cost_eur, 6),
                "updated_at": iso(self._clock.now()),
            },
        )
        return self._view(s)

    def stop_session(self, session_id: str) -> None:
        self._get(session_id)
        self._end(session_id, reason="stopped")

    # ----- the control step -----
    def cycle(self) -> None:
        """Allocate and apply: decreases first, then increases out of what is free."""
        t0 = self._clock.monotonic()
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
        now = iso(self._clock.now())
        self.store.table("sessions").update(
            s.id, {"status": "stopped", "stopped_at": now, "updated_at": now}
        )
        self._event("session_stopped", s.id, {"reason": reason, "energy_kwh": s.energy_kwh})

    def _event(self, kind: str, session_id: str, data: dict[str, Any]) -> None:
        self.store.table("events").insert(
            {
                "ts": iso(self._clock.now()),
                "kind": kind,
                "session_id": session_id,
                "data": json.dumps(data),
            }
        )

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
            started_at=s.started_at,
            energy_kwh=round(s.energy_kwh, 6),
            cost_eur=round(s.cost_eur, 4),
            binding=s.binding,
            vehicle_id=s.vehicle_id,
            fleet_id=s.fleet_id,
        )
