"""Grid signals and schedules set by the cloud, persisted so a restart keeps obeying them.

The uplink's command dispatcher writes here; the control loop and the planner read here:
`active_power_cap(now)` is an in-memory lookup, cheap enough for every control cycle.
Every kind is one row in the `signals` table (JSON of its model) plus an in-memory copy.

Kinds: power caps (start/end), tariffs (import/export price per slot + demand charge),
carbon intensity per slot, vehicle schedules, V2G session requests, battery maintenance
windows, optimisation requests, and the station configuration (replaced atomically).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

import sqlite_utils
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

log = logging.getLogger(__name__)


class SignalModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def _check_window(start: datetime | None, end: datetime | None, field: str = "end") -> None:
    if start is not None and end is not None and end <= start:
        raise ValueError(f"{field}: must be after start")


class PowerCap(SignalModel):
    """A demand-response cap on the station's grid import, in force from start to end."""

    id: str
    cap_kw: float = Field(ge=0, le=100_000, description="maximum grid import, kW")
    start: AwareDatetime
    end: AwareDatetime

    @model_validator(mode="after")
    def _window(self) -> PowerCap:
        _check_window(self.start, self.end)
        return self


class PriceSlot(SignalModel):
    start: AwareDatetime
    end: AwareDatetime
    import_eur_kwh: float = Field(ge=-10, le=10)
    export_eur_kwh: float = Field(0.0, ge=-10, le=10)

    @model_validator(mode="after")
    def _window(self) -> PriceSlot:
        _check_window(self.start, self.end)
        return self


class CarbonSlot(SignalModel):
    start: AwareDatetime
    end: AwareDatetime
    g_co2_kwh: float = Field(ge=0, le=5_000)

    @model_validator(mode="after")
    def _window(self) -> CarbonSlot:
        _check_window(self.start, self.end)
        return self


S = TypeVar("S", PriceSlot, CarbonSlot)


def _utc(ts: datetime | None) -> str | None:
    """UTC ISO text, so the `end` column compares correctly as a string."""
    return ts.astimezone(UTC).isoformat() if ts is not None else None


def _check_slots(slots: list[S]) -> list[S]:
    ordered = sorted(slots, key=lambda s: s.start)
    for i, (a, b) in enumerate(zip(ordered, ordered[1:], strict=False)):
        if b.start < a.end:
            raise ValueError(f"slots.{i + 1}: overlaps the previous slot")
    return ordered


class Tariff(SignalModel):
    id: str
    slots: list[PriceSlot] = Field(min_length=1, max_length=2000)
    demand_charge_eur_kw: float | None = Field(None, ge=0, le=10_000)

    @model_validator(mode="after")
    def _slots(self) -> Tariff:
        self.slots = _check_slots(self.slots)
        return self


class CarbonForecast(SignalModel):
    id: str
    slots: list[CarbonSlot] = Field(min_length=1, max_length=2000)

    @model_validator(mode="after")
    def _slots(self) -> CarbonForecast:
        self.slots = _check_slots(self.slots)
        return self


class VehicleScheduleFields(SignalModel):
    """A vehicle's departure and energy target: what the `vehicle.schedule` command carries
    (agent.uplink.commands) and what is stored with an id."""

    vehicle_id: str = Field(min_length=1, max_length=128)
    departure: AwareDatetime
    energy_target_kwh: float = Field(gt=0, le=1_000)
    fleet_id: str | None = Field(None, max_length=128)
    target_soc_pct: float | None = Field(None, ge=0, le=100)


class VehicleSchedule(VehicleScheduleFields):
    id: str


class V2gRequest(SignalModel):
    id: str
    session_id: str | None = Field(None, max_length=128)
    vehicle_id: str | None = Field(None, max_length=128)
    power_kw: float = Field(gt=0, le=1_000, description="discharge power asked for")
    start: AwareDatetime
    end: AwareDatetime | None = None
    min_soc_pct: float = Field(30.0, ge=0, le=100)
    energy_kwh: float | None = Field(None, gt=0, le=1_000)
    status: Literal["requested", "stopped"] = "requested"

    @model_validator(mode="after")
    def _target(self) -> V2gRequest:
        if self.session_id is None and self.vehicle_id is None:
            raise ValueError("sessionId: give sessionId or vehicleId")
        if self.status == "requested":
            _check_window(self.start, self.end)
        elif self.end is not None and self.end < self.start:  # stopped the moment it began
            raise ValueError("end: must not be before start")
        return self


class BatteryMaintenance(SignalModel):
    id: str
    kind: Literal["calibration", "balancing", "inspection"]
    start: AwareDatetime
    end: AwareDatetime
    target_soc_pct: float | None = Field(None, ge=0, le=100)

    @model_validator(mode="after")
    def _window(self) -> BatteryMaintenance:
        _check_window(self.start, self.end)
        return self


class OptimizationRequest(SignalModel):
    id: str
    horizon_h: float = Field(24.0, gt=0, le=72)
    objective: Literal["cost", "carbon", "peak"] = "cost"
    requested_at: AwareDatetime
    status: Literal["pending", "done"] = "pending"


class ChargerConfig(SignalModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    id: str = Field(min_length=1, max_length=64)
    max_power: float = Field(gt=0, le=2_000, description="kW")
    connectors: int = Field(ge=1, le=8)


class StationConfig(SignalModel):
    """Electra's station configuration; extra keys are kept for the daemon to validate."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    station_id: str = Field(min_length=1, max_length=64)
    grid_capacity: float = Field(gt=0, le=100_000, description="kW")
    chargers: list[ChargerConfig] = Field(min_length=1, max_length=256)

    @model_validator(mode="after")
    def _unique(self) -> StationConfig:
        ids = [c.id for c in self.chargers]
        if len(set(ids)) != len(ids):
            raise ValueError("chargers: charger ids must be unique")
        return self


KINDS: dict[str, type[SignalModel]] = {
    "power_cap": PowerCap,
    "tariff": Tariff,
    "carbon": CarbonForecast,
    "vehicle_schedule": VehicleSchedule,
    "v2g": V2gRequest,
    "battery_maintenance": BatteryMaintenance,
    "optimization": OptimizationRequest,
    "station_config": StationConfig,
}
STATION_CONFIG_ID = "current"
# Ended signals are kept this long (the cloud may ask what was in force), then pruned.
KEEP_ENDED = timedelta(days=7)


class Signals:
    """The persisted signals, with an in-memory copy the control loop reads every cycle."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db
        self.conn: sqlite3.Connection = db.conn
        self._by_kind: dict[str, dict[str, Any]] = {}
        self.reload()

    def reload(self) -> None:
        by_kind: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
        for sid, kind, data in self.conn.execute("SELECT id, kind, data FROM signals"):
            model = KINDS.get(kind)
            if model is None:
                continue
            try:
                by_kind[kind][sid] = model.model_validate(json.loads(data))
            except ValueError as exc:  # a row written by another version: skip, say so
                log.warning("signals: ignoring stored %s %s: %s", kind, sid, exc)
        self._by_kind = by_kind

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        # Join a transaction the caller (the dispatcher, writing its reply) already holds.
        if self.conn.in_transaction:
            yield
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def _put(self, kind: str, sid: str, model: SignalModel, start: Any, end: Any) -> None:
        created = datetime.now(UTC).isoformat()
        with self._tx():
            self.conn.execute(
                "INSERT INTO signals(id, kind, start, end, data, created) VALUES (?,?,?,?,?,?) "
                "ON CONFLICT(id) DO UPDATE SET kind=excluded.kind, start=excluded.start, "
                "end=excluded.end, data=excluded.data",
                (
                    f"{kind}:{sid}",
                    kind,
                    _utc(start),
                    _utc(end),
                    json.dumps(model.dump()),
                    created,
                ),
            )
        self._by_kind[kind][f"{kind}:{sid}"] = model

    def _all(self, kind: str) -> list[Any]:
        return list(self._by_kind[kind].values())

    # --- power caps (read every control cycle) -----------------------------------------

    def set_power_cap(self, cap: PowerCap) -> PowerCap:
        self._put("power_cap", cap.id, cap, cap.start, cap.end)
        return cap

    def clear_power_caps(self, cap_id: str | None = None) -> list[str]:
        """Cancel one power cap (the id of the command that set it) or all of them; the ids
        removed. `shorten_power_cap` brings an end forward instead."""
        keys = [k for k in self._by_kind["power_cap"]
                if cap_id is None or k == f"power_cap:{cap_id}"]  # fmt: skip
        with self._tx():
            self.conn.executemany("DELETE FROM signals WHERE id = ?", [(k,) for k in keys])
        for k in keys:
            del self._by_kind["power_cap"][k]
        return [k.split(":", 1)[1] for k in keys]

    def power_caps(self) -> list[PowerCap]:
        """Every stored cap (ended ones too, until pruned), earliest start first."""
        return sorted(self._all("power_cap"), key=lambda c: (c.start, c.id))

    def shorten_power_cap(self, cap_id: str, end: datetime) -> PowerCap:
        """Bring a cap's end forward (an end already past ends it now). Never later: a longer
        cap is a new cap. KeyError if there is no such cap; ValueError("end: ...") if the end
        would move later or to its start or before (cancel it with clear_power_caps)."""
        cap: PowerCap | None = self._by_kind["power_cap"].get(f"power_cap:{cap_id}")
        if cap is None:
            raise KeyError(cap_id)
        if end > cap.end:
            raise ValueError(f"end: after the cap's end {cap.end.isoformat()}; a cap can only be shortened")
        if end <= cap.start:
            raise ValueError(f"end: not after the cap's start {cap.start.isoformat()}; delete the cap instead")
        return self.set_power_cap(cap.model_copy(update={"end": end}))

    def active_power_cap(self, now: datetime) -> float | None:
        """The tightest cap in force at `now` (kW of grid import), or None."""
        caps = [c.cap_kw for c in self._by_kind["power_cap"].values() if c.start <= now < c.end]
        return min(caps) if caps else None

    # --- prices and carbon (planner, savings) --------------------------------------------

    def set_tariff(self, tariff: Tariff) -> Tariff:
        self._put("tariff", tariff.id, tariff, tariff.slots[0].start, tariff.slots[-1].end)
        return tariff

    def _newest_covering(self, kind: str, now: datetime) -> tuple[Any, Any] | None:
        # Later rows win: a newer tariff for the same hours replaces the older one.
        for signal in reversed(self._all(kind)):
            for slot in signal.slots:
                if slot.start <= now < slot.end:
                    return signal, slot
        return None

    def price_at(self, now: datetime) -> PriceSlot | None:
        found = self._newest_covering("tariff", now)
        return found[1] if found else None

    def demand_charge_eur_kw(self, now: datetime) -> float | None:
        found = self._newest_covering("tariff", now)
        return found[0].demand_charge_eur_kw if found else None

    def set_carbon(self, forecast: CarbonForecast) -> CarbonForecast:
        self._put("carbon", forecast.id, forecast, forecast.slots[0].start, forecast.slots[-1].end)
        return forecast

    def carbon_at(self, now: datetime) -> float | None:
        found = self._newest_covering("carbon", now)
        return found[1].g_co2_kwh if found else None

    # --- schedules and requests ---------------------------------------------------------

    def add_vehicle_schedule(self, schedule: VehicleSchedule) -> VehicleSchedule:
        self._put("vehicle_schedule", schedule.id, schedule, None, schedule.departure)
        return schedule

    def vehicle_schedules(self, now: datetime) -> list[VehicleSchedule]:
        """Schedules whose departure is still ahead, latest one per vehicle."""
        latest: dict[str, VehicleSchedule] = {}
        for s in self._all("vehicle_schedule"):
            if s.departure > now:
                latest[s.vehicle_id] = s
        return list(latest.values())

    def add_v2g_request(self, request: V2gRequest) -> V2gRequest:
        self._put("v2g", request.id, request, request.start, request.end)
        return request

    def stop_v2g(self, matches: Callable[[V2gRequest], bool], now: datetime) -> list[V2gRequest]:
        """Mark matching requested V2G requests stopped (ending now); returns them."""
        stopped = []
        for r in self._all("v2g"):
            if r.status == "requested" and matches(r):
                end = min(r.end, now) if r.end else now
                new = r.model_copy(update={"status": "stopped", "end": max(end, r.start)})
                self._put("v2g", r.id, new, new.start, new.end)
                stopped.append(new)
        return stopped

    def v2g_requests(self, now: datetime) -> list[V2gRequest]:
        return [
            r for r in self._all("v2g")
            if r.status == "requested" and (r.end is None or now < r.end)
        ]

    def add_battery_maintenance(self, window: BatteryMaintenance) -> BatteryMaintenance:
        self._put("battery_maintenance", window.id, window, window.start, window.end)
        return window

    def battery_maintenance_at(self, now: datetime) -> BatteryMaintenance | None:
        for w in self._all("battery_maintenance"):
            if w.start <= now < w.end:
                return w
        return None

    def add_optimization_request(self, request: OptimizationRequest) -> OptimizationRequest:
        self._put("optimization", request.id, request, request.requested_at, None)
        return request

    def pending_optimizations(self) -> list[OptimizationRequest]:
        return [r for r in self._all("optimization") if r.status == "pending"]

    def mark_optimization_done(self, request_id: str) -> None:
        r = self._by_kind["optimization"].get(f"optimization:{request_id}")
        if r is not None:
            done = r.model_copy(update={"status": "done"})
            self._put("optimization", r.id, done, r.requested_at, None)

    # --- station configuration ---------------------------------------------------------

    def station_config(self) -> StationConfig | None:
        return self._by_kind["station_config"].get(f"station_config:{STATION_CONFIG_ID}")

    def replace_station_config(
        self, config: StationConfig, apply: Callable[[StationConfig], None] | None = None
    ) -> StationConfig:
        """Persist `config` as the station's configuration. `apply` (the daemon's) runs first
        inside the same transaction: if it raises, nothing is stored and the old config
        stays."""
        with self._tx():
            if apply is not None:
                apply(config)
            self._put("station_config", STATION_CONFIG_ID, config, None, None)
        return config

    # --- housekeeping -------------------------------------------------------------------

    def prune(self, now: datetime) -> int:
        """Forget signals that ended more than KEEP_ENDED ago."""
        cutoff = _utc(now - KEEP_ENDED)
        with self._tx():
            cur = self.conn.execute(
                "DELETE FROM signals WHERE end IS NOT NULL AND end < ? AND kind != ?",
                (cutoff, "station_config"),
            )
        if cur.rowcount:
            self.reload()
        return cur.rowcount
