"""`[v2g]`: vehicle-to-grid limits (agent/control/v2g.py applies them)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class V2gSettings(BaseModel):
    """`[v2g]`: vehicle-to-grid on bidirectional chargers (`[[station.chargers]] v2g = true`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_power_kw: float = Field(22.0, ge=0, description="most a vehicle discharges (maxV2gPower)")
    min_soc_pct: float = Field(
        20.0, ge=0, le=100, description="no discharge at or below this SoC (v2gMinSoc), percent"
    )
    efficiency: float = Field(
        0.90, gt=0, le=1, description="kWh delivered per kWh taken from the vehicle's battery"
    )
    default_energy_kwh: float = Field(
        10.0,
        ge=0,
        description="most a vehicle gives back per session (battery side) when its V2G "
        "request names no energy",
    )
    departure_margin_h: float = Field(
        0.25,
        ge=0,
        description="departure guard: discharge stops once the time left less this, at full "
        "charge power, can no longer reach the vehicle's target",
    )
    end_timeout_s: float = Field(
        5.0,
        gt=0,
        description="a discharge that must end waits at most this long for the grid meter to "
        "confirm the headroom its end needs (the other EVs are lowered first); then it ends",
    )
