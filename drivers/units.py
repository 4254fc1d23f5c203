"""Device units -> kW / kWh (DESIGN.md units), once, at the edge."""

from __future__ import annotations

from drivers.device import Value
from drivers.profile import Point, Profile


def to_kw(value: Value, point: Point | None, profile: Profile) -> float | None:
    """Engineering value in the point's unit -> kW (or kWh). Amps use the profile's
    phases x voltage, as chargers express limits per phase."""
    if value is None or point is None or isinstance(value, str):
        return None
    if point.unit in ("W", "Wh"):
        return value / 1000.0
    if point.unit == "A":
        return value * profile.phases * profile.voltage / 1000.0
    return float(value)


def from_kw(kw: float, point: Point, profile: Profile) -> float:
    if point.unit in ("W", "Wh"):
        return kw * 1000.0
    if point.unit == "A":
        return kw * 1000.0 / (profile.phases * profile.voltage)
    return kw
