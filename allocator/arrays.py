"""Pre-allocated arrays for the control loop: fill in place, `solve()`, read the results.

Usage (the daemon, every cycle):

    arrays = StationArrays(max_chargers=16, max_sessions=32)   # once, at start-up
    arrays.warm_up()                                            # once: compile or load the cache

    # each cycle: station scalars (kW; soc in %)
    arrays.set_station(grid_capacity=330.0, base_load=12.5, pv_power=40.0,
                       battery_max_discharge=50.0, battery_max_charge=50.0,
                       battery_soc=63.0, battery_min_soc=10.0)
    arrays.n_chargers = 2
    arrays.charger_max[:2] = (200.0, 200.0)                     # or set_charger(j, kw)
    arrays.n_sessions = 3
    arrays.set_session(0, charger=0, vehicle_max=80.0)          # rows in arrival order
    arrays.set_session(1, charger=0, vehicle_max=150.0, power_cap=120.0, min_power=4.1)
    arrays.set_session(2, charger=1, vehicle_max=150.0, priority=1.0)
    arrays.solve()
    arrays.allocation[:3]     # kW per session row (float64 view, valid until the next solve)
    arrays.binding[:3]        # int8 codes; BINDING_NAMES[code] gives the name
    arrays.battery_power, arrays.grid_power                     # kW (> 0 discharging / importing)

Rows may also be written directly through the named views (`vehicle_max`, `power_cap` (inf
for none), `min_power`, `priority`, `session_charger`, `arrival`): `set_session` is only the
checked way. `arrival` ranks order the pause rule (larger = arrived later); set_session
defaults it to the row number. solve() allocates nothing: every array, scratch included, is
created here once. It raises ValueError when counts or charger indices are out of range,
which would otherwise make the jitted code read out of bounds.
"""

from __future__ import annotations

import math

import numpy as np

from allocator import kernel
from allocator.binding import BINDING_NAMES

__all__ = ["BINDING_NAMES", "StationArrays"]


def _kw(value: float, name: str, *, minimum: float = 0.0, allow_inf: bool = False) -> float:
    number = float(value)
    if math.isnan(number) or (math.isinf(number) and not allow_inf):
        raise ValueError(f"{name}: must be finite, got {value}")
    if number < minimum:
        raise ValueError(f"{name}: must be >= {minimum:g}, got {value}")
    return number


class StationArrays:
    """Inputs, outputs and scratch space of the allocation kernel for one station."""

    def __init__(self, max_chargers: int, max_sessions: int) -> None:
        if max_chargers < 0 or max_sessions < 0:
            raise ValueError("max_chargers and max_sessions must be >= 0")
        self.max_chargers = max_chargers
        self.max_sessions = max_sessions
        self.n_chargers = 0
        self.n_sessions = 0
        self.station = np.zeros(kernel.STATION_FIELDS)
        self.charger_max = np.zeros(max_chargers)
        self._session_f = np.zeros((kernel.SESSION_F_ROWS, max_sessions))
        self._session_i = np.zeros((kernel.SESSION_I_ROWS, max_sessions), dtype=np.int64)
        self.vehicle_max = self._session_f[kernel.VEHICLE_MAX]
        self.power_cap = self._session_f[kernel.POWER_CAP]
        self.min_power = self._session_f[kernel.MIN_POWER]
        self.priority = self._session_f[kernel.PRIORITY]
        self.session_charger = self._session_i[kernel.CHARGER_INDEX]
        self.arrival = self._session_i[kernel.ARRIVAL]
        self.power_cap[:] = math.inf
        self.allocation = np.zeros(max_sessions)
        self.binding = np.zeros(max_sessions, dtype=np.int8)
        self._scratch_s = np.zeros((kernel.SCRATCH_SESSION_ROWS, max_sessions), dtype=np.int64)
        self._scratch_c = np.zeros((kernel.SCRATCH_CHARGER_ROWS, max_chargers + 1), dtype=np.int64)

    def set_station(self, *, grid_capacity: float, base_load: float = 0.0, pv_power: float = 0.0,
                    battery_max_discharge: float = 0.0, battery_max_charge: float = 0.0,
                    battery_soc: float = 0.0, battery_min_soc: float = 0.0) -> None:
        """Station scalars in kW (soc in %); a station without battery leaves the battery at 0."""
        s = self.station
        s[kernel.GRID_CAPACITY] = _kw(grid_capacity, "grid_capacity")
        s[kernel.BASE_LOAD] = _kw(base_load, "base_load")
        s[kernel.PV_POWER] = _kw(pv_power, "pv_power")
        s[kernel.BATTERY_MAX_DISCHARGE] = _kw(battery_max_discharge, "battery_max_discharge")
        s[kernel.BATTERY_MAX_CHARGE] = _kw(battery_max_charge, "battery_max_charge")
        s[kernel.BATTERY_SOC] = _kw(battery_soc, "battery_soc")
        s[kernel.BATTERY_MIN_SOC] = _kw(battery_min_soc, "battery_min_soc")

    def set_charger(self, index: int, max_power: float) -> None:
        if not 0 <= index < self.max_chargers:
            raise ValueError(f"charger index {index} out of range 0..{self.max_chargers - 1}")
        if not max_power > 0 or math.isinf(max_power):
            raise ValueError(f"charger {index} max_power: must be > 0 and finite, got {max_power}")
        self.charger_max[index] = max_power

    def set_session(self, row: int, *, charger: int, vehicle_max: float,
                    power_cap: float = math.inf, min_power: float = 0.0, priority: float = 0.0,
                    arrival: int | None = None) -> None:
        """One session row (kW); rows are usually in arrival order, arrival defaults to row."""
        if not 0 <= row < self.max_sessions:
            raise ValueError(f"session row {row} out of range 0..{self.max_sessions - 1}")
        if not 0 <= charger < self.max_chargers:
            raise ValueError(f"session {row} charger: index {charger} out of range")
        self.session_charger[row] = charger
        self.vehicle_max[row] = _kw(vehicle_max, f"session {row} vehicle_max")
        self.power_cap[row] = _kw(power_cap, f"session {row} power_cap", allow_inf=True)
        self.min_power[row] = _kw(min_power, f"session {row} min_power")
        self.priority[row] = _kw(priority, f"session {row} priority", minimum=-math.inf)
        self.arrival[row] = row if arrival is None else arrival

    def solve(self) -> None:
        """Run the kernel on the current contents; results land in allocation/binding/station."""
        if not (0 <= self.n_chargers <= self.max_chargers and 0 <= self.n_sessions <= self.max_sessions):
            raise ValueError(f"n_chargers={self.n_chargers}, n_sessions={self.n_sessions} exceed "
                             f"capacity {self.max_chargers}, {self.max_sessions}")
        status = kernel.solve(self.station, self.n_chargers, self.charger_max, self.n_sessions,
                              self._session_f, self._session_i, self.allocation, self.binding,
                              self._scratch_s, self._scratch_c)
        if status == kernel.BAD_CHARGER_INDEX:
            raise ValueError(f"session_charger: an index is outside 0..{self.n_chargers - 1}")

    def warm_up(self) -> None:
        """Compile the kernel (or load it from NUMBA_CACHE_DIR) before the first real cycle."""
        StationArrays(1, 1).solve()

    @property
    def battery_power(self) -> float:
        return float(self.station[kernel.OUT_BATTERY_POWER])

    @property
    def grid_power(self) -> float:
        return float(self.station[kernel.OUT_GRID_POWER])

    def binding_names(self) -> list[str]:
        """Binding of each session row as names (allocates a list: not for the hot path)."""
        return [BINDING_NAMES[code] for code in self.binding[: self.n_sessions]]
