"""Request and response bodies of the local API (pydantic), Electra's shapes exactly.

Electra's JSON is camelCase with kW numbers; the fleet resources (`/api/v1`) keep the fleet
service's snake_case. Validation lives here so that a bad body is refused before any
handler runs, with the field and the reason (see app.py's 400 handler).
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    # Unknown keys are refused: a typo such as "gridCapcity" must not silently keep a default.
    model_config = ConfigDict(extra="forbid")


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


class ChargerConfig(_Strict):
    id: str = Field(min_length=1, max_length=64, description="Charger id, unique in the station")
    maxPower: float = Field(
        gt=0, le=10_000, description="Charger maximum power, kW, shared by its connectors"
    )
    connectors: int = Field(ge=1, le=16, description="Number of connectors, indexed from 1")

    _finite_power = field_validator("maxPower")(_finite)


class StationConfig(_Strict):
    """Electra's station configuration (`GET`/`POST /station/config`)."""

    stationId: str = Field(min_length=1, max_length=64, description="Station identifier")
    gridCapacity: float = Field(ge=0, le=100_000, description="Grid connection capacity, kW")
    chargers: list[ChargerConfig] = Field(default_factory=list, max_length=256)
    baseLoad: float | None = Field(
        default=None,
        ge=0,
        le=100_000,
        description="Non-EV site load counted against the capacity, kW (sems-edge extension)",
    )

    _finite_capacity = field_validator("gridCapacity")(_finite)

    @model_validator(mode="after")
    def _unique_charger_ids(self) -> StationConfig:
        seen: set[str] = set()
        for i, charger in enumerate(self.chargers):
            if charger.id in seen:
                raise ValueError(f"chargers[{i}].id: duplicate charger id {charger.id!r}")
            seen.add(charger.id)
        return self

    def charger(self, charger_id: str) -> ChargerConfig | None:
        return next((c for c in self.chargers if c.id == charger_id), None)


class ConnectorId(_Strict):
    chargerId: str = Field(min_length=1, max_length=64)
    idx: int = Field(description="Connector index, starting at 1")


class SessionCreate(_Strict):
    connectorId: ConnectorId
    vehicleMaxPower: float = Field(gt=0, le=10_000, description="The vehicle's maximum power, kW")

    _finite_power = field_validator("vehicleMaxPower")(_finite)


class PowerUpdate(_Strict):
    consumedPower: float = Field(ge=0, le=10_000, description="Power the vehicle draws now, kW")

    _finite_power = field_validator("consumedPower")(_finite)


class Session(BaseModel):
    sessionId: str
    connectorId: ConnectorId
    allocatedPower: float
    vehicleMaxPower: float | None


class SessionEnvelope(BaseModel):
    session: Session


class StationStatus(BaseModel):
    sessions: dict[str, Session]


class Health(BaseModel):
    status: str
