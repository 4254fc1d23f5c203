"""Chargers whose fallback ("safe") current is set in the charger, not over Modbus.

Alfen's "Active Load Balancing Safe Current" (1212) is configured in ACE Service Installer
and read-only over Modbus. The station's promise rests on every charger falling back to at
most its share when the agent goes silent, so the configured value is read at start and a
charger whose safe current exceeds its share is refused: `FallbackRefused` says which
setting to change and to what.
"""

from __future__ import annotations

from typing import Any, Protocol

from drivers.device import NotSupported
from drivers.profile import Profile
from drivers.units import to_kw


class Charger(Protocol):
    """What the check needs of a charger (drivers.devices.Charger, which calls this module:
    a protocol rather than an import keeps the two free of a cycle)."""

    name: str
    profile: Profile
    connectors: int

    async def read_values(self) -> dict[Any, Any]: ...

    def _conn_profile(self, idx: int | None) -> Profile: ...

# How the vendor calls the setting, where to change it (shown to the installer).
SETTING_NAMES = {
    "Alfen": ("Active Load Balancing Safe Current", "ACE Service Installer"),
}
TOLERANCE_KW = 0.05  # rounding of A <-> kW; not a margin on the promise


class FallbackRefused(NotSupported):
    """The charger's own fallback exceeds the share the station needs it to fall back to;
    `configured_kw`: what each connector falls back to instead."""

    def __init__(self, message: str, configured_kw: float | None = None) -> None:
        super().__init__(message)
        self.configured_kw = configured_kw


async def check_configured(ch: Charger, share_kw: float) -> None:
    """Read the configured fallback (and how long the current setpoint stays valid) and
    refuse the charger if its fallback, on every connector, exceeds `share_kw` each."""
    values = await ch.read_values()
    safe = values.get("fallback_limit") if "fallback_limit" in values else None
    if safe is None:
        for idx in range(1, ch.connectors + 1):
            v = values.get(("fallback_limit", idx))
            if isinstance(v, float):
                safe = v if safe is None else max(float(safe), v)
    if not isinstance(safe, float):
        raise FallbackRefused(f"{ch.name}: configured fallback current unreadable; cannot "
                              "promise the station limit if the agent stops")
    point = ch.profile.point("fallback_limit")
    assert point is not None
    profile = _profile_for(ch)
    per_kw = to_kw(safe, point, profile) or 0.0
    if per_kw <= share_kw + TOLERANCE_KW:
        return
    name, tool = SETTING_NAMES.get(ch.profile.vendor, ("fallback current", "the charger's configuration tool"))
    most = share_kw if point.unit != "A" else share_kw * 1000.0 / (profile.phases * profile.voltage)
    unit = point.unit or "kW"
    raise FallbackRefused(
        f"{ch.name}: '{name}' is {safe:g} {unit} ({per_kw:.1f} kW) per connector x "
        f"{ch.connectors} = {per_kw * ch.connectors:.1f} kW, more than the station's fallback "
        f"share of {share_kw * ch.connectors:.1f} kW; set '{name}' to at most {most:.1f} {unit} "
        f"in {tool}", configured_kw=per_kw)


def _profile_for(ch: Charger) -> Profile:
    return ch._conn_profile(1)

