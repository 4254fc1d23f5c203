"""Hard ceilings: the physical limits the installer wrote in the settings file.

The grid connection (`station.grid_capacity_kw`) and each charger's rating
(`station.chargers[].max_power_kw`) in the TOML file are the installer's word. A station
configuration from the local API (`POST /station/config`) or the cloud
(`station.config.set`) may lower them and set anything below them, never raise them: one
that would is refused with a field error naming the ceiling. A stored configuration above
the file's values (the file was lowered since) is ignored at start-up; a SIGHUP re-reads
the file and its values become the ceilings. Fallback limits derive from the settings in
force, which are never above these ceilings, so all chargers at their fallbacks stay under
the file's grid capacity less the pessimistic base load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.config.settings import AgentSettings

EPS_KW = 1e-9


@dataclass(frozen=True, slots=True)
class HardCeilings:
    grid_capacity_kw: float
    charger_kw: dict[str, float]

    @classmethod
    def of(cls, settings: AgentSettings) -> HardCeilings:
        """The ceilings of a settings file as loaded (before any stored configuration)."""
        st = settings.station
        return cls(st.grid_capacity_kw, {c.id: c.max_power_kw for c in st.chargers})

    def check(self, config: Any) -> None:
        """ValueError("config.<field>: ...") when `config` (a StationConfig of
        agent/store/signals.py, which config/ may not import) raises any ceiling."""
        if config.grid_capacity > self.grid_capacity_kw + EPS_KW:
            raise ValueError(
                f"config.gridCapacity: {config.grid_capacity:g} kW is above this station's "
                f"grid connection, {self.grid_capacity_kw:g} kW (station.grid_capacity_kw in "
                "the settings file); it may only be lowered"
            )
        for i, c in enumerate(config.chargers):
            rating = self.charger_kw.get(c.id)
            if rating is not None and c.max_power > rating + EPS_KW:
                raise ValueError(
                    f"config.chargers[{i}].maxPower: {c.max_power:g} kW is above charger "
                    f"{c.id!r}'s rating, {rating:g} kW (station.chargers[].max_power_kw in the "
                    "settings file); it may only be lowered"
                )
