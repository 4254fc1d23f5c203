"""kW <-> the charger's rate unit. Limits are rounded DOWN to the charger's step, so what it
applies is never above what the allocator gave."""

from __future__ import annotations

import math

from agent.config.ocpp import OcppChargerConfig


def to_rate(kw: float, unit: str, cfg: OcppChargerConfig, phases: int | None = None) -> float:
    """A limit in kW as the charger's rate unit value (W, or A per phase). `phases`: the
    count the profile carries (a connector switched to one phase), else the charger's."""
    kw = max(0.0, kw)
    if unit == "W":
        return _floor(kw * 1000.0, cfg.power_step_w)
    return _floor(kw * 1000.0 / ((phases or cfg.phases) * cfg.voltage), cfg.current_step_a)


def from_rate(value: float, unit: str, cfg: OcppChargerConfig, phases: int | None = None) -> float:
    if unit == "W":
        return value / 1000.0
    return value * (phases or cfg.phases) * cfg.voltage / 1000.0


def _floor(value: float, step: float) -> float:
    # A hair of tolerance so 16.0 A stays 16.0 A after float noise (15.9999999 -> 16.0).
    return round(math.floor(value / step + 1e-9) * step, 6)


def pick_unit(allowed: str | None, override: str | None) -> str:
    """The unit to send: the override, else W where the charger takes it (finer on DC and
    no voltage guess), else A. `allowed` is what the charger reported at boot
    ("Current,Power" in 1.6, "A,W" in 2.0.1), None when it did not say."""
    if override:
        return override
    if not allowed:
        return "A"  # every smart-charging charger takes A
    words = {w.strip().lower() for w in allowed.split(",")}
    return "W" if words & {"power", "w"} else "A"
