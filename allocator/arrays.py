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

Under an electrical tree (circuits, per-phase currents), size the arrays for it and describe
it; solve() then runs the tree kernel (`tree_kernel.py`), otherwise the kW-only fast path:

    arrays = StationArrays(max_chargers=16, max_sessions=32, max_circuits=4)
    arrays.voltage = 230.0
    arrays.n_circuits = 2
    arrays.set_circuit(0, max_current=63.0, base_current=(8.0, 3.0, 5.0))      # the main board
    arrays.set_circuit(1, parent=0, max_current=32.0)                           # a sub-board
    arrays.set_charger(0, 22.0, circuit=1, phases=3, rotation=(1, 2, 0), max_current=32.0)
    arrays.set_session(0, charger=0, vehicle_max=7.4, phases=1)
    arrays.solve(); arrays.binding_circuit[:1]                                  # circuit index or -1

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

from allocator import kernel, tree_kernel
from allocator.battery import follow_setpoint
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

    def __init__(self, max_chargers: int, max_sessions: int, max_circuits: int = 0) -> None:
        if max_chargers < 0 or max_sessions < 0 or max_circuits < 0:
            raise ValueError("max_chargers, max_sessions and max_circuits must be >= 0")
        self.max_chargers = max_chargers
        self.max_sessions = max_sessions
        self.max_circuits = max_circuits
        self.n_chargers = 0
        self.n_sessions = 0
        self.n_circuits = 0
        # True when a circuit or a charger current limit is in use: solve() takes the tree
        # kernel. set_circuit and set_charger(max_current=...) set it; clear it yourself.
        self.tree = False
        self.station = np.zeros(kernel.STATION_FIELDS)
        self.station[kernel.VOLTAGE] = 230.0
        self._charger_f = np.zeros((2, max_chargers))  # kW, A per phase (inf: none)
        self.charger_max = self._charger_f[0]
        self.charger_current = self._charger_f[1]
        self.charger_current[:] = math.inf
        self.charger_i = np.zeros((tree_kernel.CHARGER_I_ROWS, max_chargers), dtype=np.int64)
        self.charger_i[tree_kernel.CHARGER_CIRCUIT] = -1
        self.charger_i[tree_kernel.CHARGER_PHASES] = 3
        for q in range(3):
            self.charger_i[tree_kernel.ROTATION + q] = q
        self.circuit_f = np.zeros((tree_kernel.CIRCUIT_F_ROWS, max_circuits))
        self.circuit_f[tree_kernel.CIRCUIT_MAX_POWER] = math.inf
        self.circuit_f[tree_kernel.CIRCUIT_MAX_CURRENT] = math.inf
        self.circuit_parent = np.full(max_circuits, -1, dtype=np.int64)
        self._work = np.zeros(tree_kernel.work_size(max_chargers, max_sessions, max_circuits),
                              dtype=np.int64)
        self.binding_circuit = self._work[:max_sessions]  # output of the tree kernel
        self.binding_circuit[:] = -1
        self._session_f = np.zeros((kernel.SESSION_F_ROWS, max_sessions))
        self._session_i = np.zeros((kernel.SESSION_I_ROWS, max_sessions), dtype=np.int64)
        self.vehicle_max = self._session_f[kernel.VEHICLE_MAX]
        self.power_cap = self._session_f[kernel.POWER_CAP]
        self.min_power = self._session_f[kernel.MIN_POWER]
        self.priority = self._session_f[kernel.PRIORITY]
        self.session_charger = self._session_i[kernel.CHARGER_INDEX]
        self.arrival = self._session_i[kernel.ARRIVAL]
        self.session_phases = self._session_i[kernel.SESSION_PHASES]  # 0: the charger's
        self.power_cap[:] = math.inf
        self.allocation = np.zeros(max_sessions)
        self.binding = np.zeros(max_sessions, dtype=np.int8)
        self._scratch_s = np.zeros((kernel.SCRATCH_SESSION_ROWS, max_sessions), dtype=np.int64)
        self._scratch_c = np.zeros((kernel.SCRATCH_CHARGER_ROWS, max_chargers + 1), dtype=np.int64)
        self.battery_setpoint: float | None = None  # the plan's battery power (battery.py)

    def set_station(self, *, grid_capacity: float, base_load: float = 0.0, pv_power: float = 0.0,
                    battery_max_discharge: float = 0.0, battery_max_charge: float = 0.0,
                    battery_soc: float = 0.0, battery_min_soc: float = 0.0,
                    battery_setpoint: float | None = None) -> None:
        """Station scalars in kW (soc in %); a station without battery leaves the battery at 0.
        `battery_setpoint`: the plan's battery power (> 0 discharge), None without a plan."""
        s = self.station
        s[kernel.GRID_CAPACITY] = _kw(grid_capacity, "grid_capacity")
        s[kernel.BASE_LOAD] = _kw(base_load, "base_load")
        s[kernel.PV_POWER] = _kw(pv_power, "pv_power")
        s[kernel.BATTERY_MAX_DISCHARGE] = _kw(battery_max_discharge, "battery_max_discharge")
        s[kernel.BATTERY_MAX_CHARGE] = _kw(battery_max_charge, "battery_max_charge")
        s[kernel.BATTERY_SOC] = _kw(battery_soc, "battery_soc")
        s[kernel.BATTERY_MIN_SOC] = _kw(battery_min_soc, "battery_min_soc")
        if battery_setpoint is not None and not math.isfinite(battery_setpoint):
            raise ValueError(f"battery_setpoint: must be finite, got {battery_setpoint}")
        self.battery_setpoint = battery_setpoint

    @property
    def voltage(self) -> float:
        return float(self.station[kernel.VOLTAGE])

    @voltage.setter
    def voltage(self, volts: float) -> None:
        self.station[kernel.VOLTAGE] = _kw(volts, "voltage", minimum=1.0)

    def set_charger(self, index: int, max_power: float, *, circuit: int = -1, phases: int = 3,
                    rotation: tuple[int, int, int] = (0, 1, 2), max_current: float = math.inf,
                    dc: bool = False) -> None:
        """A charger: kW, and its place in the tree (circuit index or -1; the grid phase,
        0..2, of each of its conductors; A per phase)."""
        if not 0 <= index < self.max_chargers:
            raise ValueError(f"charger index {index} out of range 0..{self.max_chargers - 1}")
        if not max_power > 0 or math.isinf(max_power):
            raise ValueError(f"charger {index} max_power: must be > 0 and finite, got {max_power}")
        if not -1 <= circuit < self.max_circuits:
            raise ValueError(f"charger {index} circuit: index {circuit} out of range")
        if phases not in (1, 3):
            raise ValueError(f"charger {index} phases: must be 1 or 3, got {phases}")
        if sorted(rotation) != [0, 1, 2]:
            raise ValueError(f"charger {index} rotation: must be a permutation of (0, 1, 2)")
        self.charger_max[index] = max_power
        self.charger_current[index] = _kw(max_current, f"charger {index} max_current", allow_inf=True)
        row = self.charger_i[:, index]
        row[tree_kernel.CHARGER_CIRCUIT] = circuit
        row[tree_kernel.CHARGER_PHASES] = phases
        row[tree_kernel.ROTATION:tree_kernel.ROTATION + 3] = rotation
        row[tree_kernel.CHARGER_DC] = int(dc)
        if circuit >= 0 or not math.isinf(max_current):
            self.tree = True

    def set_circuit(self, index: int, *, parent: int = -1, max_power: float = math.inf,
                    max_current: float = math.inf, base_power: float = 0.0,
                    base_current: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> None:
        """A circuit (kW, A per phase; base = non-EV load measured at its feeder)."""
        if not 0 <= index < self.max_circuits:
            raise ValueError(f"circuit index {index} out of range 0..{self.max_circuits - 1}")
        if not -1 <= parent < self.max_circuits or parent == index:
            raise ValueError(f"circuit {index} parent: index {parent} out of range or itself")
        f = self.circuit_f[:, index]
        f[tree_kernel.CIRCUIT_MAX_POWER] = _kw(max_power, f"circuit {index} max_power", allow_inf=True)
        f[tree_kernel.CIRCUIT_MAX_CURRENT] = _kw(max_current, f"circuit {index} max_current", allow_inf=True)
        f[tree_kernel.CIRCUIT_BASE_POWER] = _kw(base_power, f"circuit {index} base_power")
        for p in range(3):
            f[tree_kernel.CIRCUIT_BASE_CURRENT + p] = _kw(base_current[p], f"circuit {index} base_current")
        self.circuit_parent[index] = parent
        self.tree = True

    def set_session(self, row: int, *, charger: int, vehicle_max: float,
                    power_cap: float = math.inf, min_power: float = 0.0, priority: float = 0.0,
                    arrival: int | None = None, phases: int = 0) -> None:
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
        if phases not in (0, 1, 2, 3):
            raise ValueError(f"session {row} phases: must be 1, 2 or 3 (0: the charger's), got {phases}")
        self.session_phases[row] = phases

    def solve(self) -> None:
        """Run the kernel on the current contents; results land in allocation/binding/station."""
        if not (0 <= self.n_chargers <= self.max_chargers and 0 <= self.n_sessions <= self.max_sessions):
            raise ValueError(f"n_chargers={self.n_chargers}, n_sessions={self.n_sessions} exceed "
                             f"capacity {self.max_chargers}, {self.max_sessions}")
        if self.tree:
            self._solve_tree()
        else:
            status = kernel.solve(self.station, self.n_chargers, self.charger_max, self.n_sessions,
                                  self._session_f, self._session_i, self.allocation, self.binding,
                                  self._scratch_s, self._scratch_c)
            if status == kernel.BAD_CHARGER_INDEX:
                raise ValueError(f"session_charger: an index is outside 0..{self.n_chargers - 1}")
        if self.battery_setpoint is not None:
            self._follow_setpoint(self.battery_setpoint)

    def _follow_setpoint(self, setpoint: float) -> None:
        """Rule 5 with the plan's setpoint, after the kernel (battery.py), as the reference."""
        k = kernel
        s = self.station.tolist()  # plain floats: numpy scalars are slower one by one
        # The EVs' total in whole steps, as the reference sums it (allocations are steps / 100).
        ev_kw = round(float(self.allocation[: self.n_sessions].sum()) * k.STEPS_PER_KW) / k.STEPS_PER_KW
        battery = follow_setpoint(
            s[k.OUT_BATTERY_POWER], setpoint, net_kw=s[k.BASE_LOAD] + ev_kw - s[k.PV_POWER],
            grid_capacity=s[k.GRID_CAPACITY], max_discharge=s[k.BATTERY_MAX_DISCHARGE],
            max_charge=s[k.BATTERY_MAX_CHARGE], soc=s[k.BATTERY_SOC], min_soc=s[k.BATTERY_MIN_SOC])
        self.station[k.OUT_BATTERY_POWER] = battery
        self.station[k.OUT_GRID_POWER] = s[k.BASE_LOAD] + ev_kw - s[k.PV_POWER] - battery

    def _solve_tree(self) -> None:
        if not 0 <= self.n_circuits <= self.max_circuits:
            raise ValueError(f"n_circuits={self.n_circuits} exceeds capacity {self.max_circuits}")
        status = tree_kernel.solve_tree(
            self.station, self.n_chargers, self._charger_f, self.charger_i, self.n_circuits,
            self.circuit_f, self.circuit_parent, self.n_sessions, self._session_f, self._session_i,
            self.allocation, self.binding, self._work)
        if status == tree_kernel.BAD_CHARGER_INDEX:
            raise ValueError(f"session_charger: an index is outside 0..{self.n_chargers - 1}")
        if status == tree_kernel.BAD_CIRCUIT:
            raise ValueError("circuits: a parent or charger circuit index is out of range, or parents form a cycle")

    def warm_up(self) -> None:
        """Compile the kernel in use (or load it from NUMBA_CACHE_DIR) before the first real
        cycle: the tree kernel when a circuit or charger current limit is set, else the fast one
        (so a station without a tree does not pay the tree kernel's compilation)."""
        if not self.tree:
            StationArrays(1, 1).solve()
            return
        tree = StationArrays(1, 1, 1)
        tree.set_circuit(0)
        tree.solve()

    @property
    def battery_power(self) -> float:
        return float(self.station[kernel.OUT_BATTERY_POWER])

    @property
    def grid_power(self) -> float:
        return float(self.station[kernel.OUT_GRID_POWER])

    def binding_names(self) -> list[str]:
        """Binding of each session row as names (allocates a list: not for the hot path)."""
        return [BINDING_NAMES[code] for code in self.binding[: self.n_sessions]]
