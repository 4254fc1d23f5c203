"""Bodies of the fleet service's `/api/v1` resources (snake_case, as that service uses).

Validation rules from the issue: vehicle_id and fleet_id required; levels within 0-100;
the end level above the start level; a window's end after its start.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator


def Level(default: object = ...) -> Any:  # noqa: N802 (reads as a type in the models)
    return Field(default, ge=0, le=100, description="State of charge, percent")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FleetSessionCreate(_Body):
    vehicle_id: str = Field(min_length=1, max_length=64)
    fleet_id: str = Field(min_length=1, max_length=64)
    start_level: float = Level()
    end_level: float = Level()
    departure: AwareDatetime | None = Field(
        default=None, description="When the vehicle leaves (ISO-8601 with zone)"
    )
    battery_capacity_kwh: float | None = Field(default=None, gt=0, le=2000)
    max_power_kw: float | None = Field(
        default=None, gt=0, le=1000, description="The vehicle's maximum power, kW"
    )
    charger_id: str | None = Field(default=None, min_length=1, max_length=64)
    connector_idx: int | None = Field(default=None, ge=1, le=16)

    @model_validator(mode="after")
    def _levels(self) -> FleetSessionCreate:
        if self.end_level <= self.start_level:
            raise ValueError("end_level: must be above start_level")
        return self


class FleetSessionUpdate(_Body):
    start_level: float | None = Level(None)
    end_level: float | None = Level(None)
    departure: AwareDatetime | None = None
    battery_capacity_kwh: float | None = Field(default=None, gt=0, le=2000)
    max_power_kw: float | None = Field(default=None, gt=0, le=1000)
    charger_id: str | None = Field(default=None, min_length=1, max_length=64)
    connector_idx: int | None = Field(default=None, ge=1, le=16)


class FleetSessionStart(_Body):
    charger_id: str | None = Field(default=None, min_length=1, max_length=64)
    connector_idx: int | None = Field(default=None, ge=1, le=16)


class FleetSession(BaseModel):
    id: str
    kind: Literal["charging", "v2g"]
    vehicle_id: str
    fleet_id: str
    status: Literal["scheduled", "active", "completed"]
    start_level: float
    end_level: float
    departure: datetime | None
    battery_capacity_kwh: float | None
    max_power_kw: float | None
    charger_id: str | None
    connector_idx: int | None
    session_id: str | None = Field(description="The station session once started")
    allocated_kw: float | None = None
    power_kw: float | None = None
    energy_kwh: float = 0.0
    current_level: float | None = Field(
        default=None, description="Estimated from energy and capacity"
    )
    created_at: str
    updated_at: str


class FleetSessionList(BaseModel):
    sessions: list[FleetSession]
    total: int


OptimizationType = Literal["charging", "v2g", "battery", "fleet", "cost", "peak"]


class OptimizationCreate(_Body):
    type: OptimizationType = "charging"
    fleet_id: str | None = Field(default=None, min_length=1, max_length=64)
    horizon_hours: float = Field(default=24, gt=0, le=48)
    slot_minutes: Literal[5, 10, 15, 30, 60] = 15
    import_price_eur_kwh: float | None = Field(
        default=None, ge=-10, le=10, description="Flat price when no tariff is known"
    )
    demand_charge_eur_kw: float | None = Field(default=None, ge=0, le=1000)


class Optimization(BaseModel):
    id: str
    type: str
    status: Literal["created", "running", "completed", "failed"]
    params: dict
    error: str | None = None
    created_at: str
    updated_at: str


class OptimizationResults(BaseModel):
    id: str
    status: str
    result: dict | None
    error: str | None = None


class OptimizationList(BaseModel):
    optimizations: list[Optimization]
    total: int


class MaintenanceRequest(_Body):
    kind: Literal["calibration", "balancing", "inspection"] = "inspection"
    start: AwareDatetime
    end: AwareDatetime
    target_soc_pct: float | None = Level(None)

    @model_validator(mode="after")
    def _window(self) -> MaintenanceRequest:
        if self.end <= self.start:
            raise ValueError("end: must be after start")
        return self


class VehicleSchedule(_Body):
    departure: AwareDatetime
    energy_target_kwh: float = Field(gt=0, le=1000, description="Energy wanted by departure, kWh")
    fleet_id: str | None = Field(default=None, min_length=1, max_length=64)
    target_soc_pct: float | None = Level(None)


class FleetOptimizationRequest(_Body):
    horizon_hours: float = Field(default=24, gt=0, le=48)
    import_price_eur_kwh: float | None = Field(default=None, ge=-10, le=10)
