"""The cycle's process image: every later step of a cycle sees one frozen instant.

Plain immutable values only (no driver objects), so a snapshot can be built by hand in a
test, logged, or handed to another task without copying.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# IEC 61851 control-pilot states in which an EV is plugged in.
OCCUPIED = frozenset({"B", "C", "D"})
VACANT = "A"


@dataclass(frozen=True, slots=True)
class ConnectorState:
    charger_id: str
    idx: int  # 1-based, as on the charger's label
    state: str  # IEC 61851 A..F, "?" when unknown
    power_kw: float  # > 0 charging the EV
    energy_kwh: float  # the charger's session counter
    ev_max_kw: float | None = None  # the EV's maximum, where the charger knows it
    limit_kw: float | None = None  # limit the charger reports applying, where readable
    soc_pct: float | None = None  # the EV's state of charge, where the charger reports it
    vehicle_id: str | None = None  # the session's id tag, where the charger reports one (OCPP)
    # The charger's transaction id (OCPP): a new one means a new session even when no
    # cycle saw the connector vacant (an unplug and re-plug between two reads).
    transaction_id: str | None = None
    # A on the charger's L1, L2, L3 (before its rotation), where it reports them: what the
    # EV's phase count is learned from (agent/control/phase_learning.py).
    currents_a: tuple[float, float, float] | None = None
    # When power_kw was measured where the charger reports it less often than it is read
    # (OCPP meter values): the consumption cap counts time between samples, not reads.
    power_ts: float | None = None
    # The phases the charger has it charge on, where it reads them (Alfen 1215): 1 or 3.
    charge_phases: int | None = None
    # False: nothing has measured its draw yet (a virtual charger's session before its
    # integration's first report, agent/control/virtual.py): power_kw 0 is no measurement,
    # so no consumption cap is taken from it.
    measured: bool = True
    # A limit above the agent's in force now (an operator CSMS's, OCPP local controller
    # mode): the allocator gives the session no more (controller.py), the rest to others.
    cap_kw: float | None = None

    @property
    def occupied(self) -> bool:
        return self.state in OCCUPIED


@dataclass(frozen=True, slots=True)
class ChargerState:
    id: str
    reachable: bool  # a fresh reading this cycle; False: connectors hold the last values
    connectors: tuple[ConnectorState, ...]
    limit_in_amps: bool = False  # its limit is A per phase, converted at its phases
    # It switches between 1 and 3 phases, pausing this long (agent/control/phase_switch.py).
    phase_switch_pause_s: float | None = None
    cap_kw: float | None = None  # the charger's limit above the agent's (a CSMS max profile)


@dataclass(frozen=True, slots=True)
class BatteryState:
    soc: float  # percent
    max_charge_kw: float  # what the BMS allows now
    max_discharge_kw: float
    power_kw: float  # > 0 discharging into the station
    # For battery health (agent/energy/battery_watch.py); None where the BMS does not say.
    soh_pct: float | None = None
    temp_min_c: float | None = None
    temp_max_c: float | None = None
    cell_v_min: float | None = None
    cell_v_max: float | None = None


@dataclass(frozen=True, slots=True)
class CircuitMeterState:
    """A `[[station.circuits]]` meter's reading: None values when it is stale."""

    circuit_id: str
    currents_a: tuple[float, float, float] | None  # per grid phase L1..L3
    power_kw: float | None
    age_s: float = 0.0  # how old the reading is at the start of the cycle (s)


@dataclass(frozen=True, slots=True)
class Snapshot:
    t: float  # monotonic seconds at the start of the cycle
    ts: datetime  # wall clock, UTC
    grid_kw: float | None  # import > 0; None when the meter is stale
    pv_kw: float | None  # None when unknown or stale (counted as 0)
    battery: BatteryState | None  # None when the BMS is stale or absent
    chargers: tuple[ChargerState, ...]
    # The grid meter's energy counters (kWh), None when stale or invalid (savings ledger).
    grid_import_kwh: float | None = None
    grid_export_kwh: float | None = None
    # How old the grid reading is at the start of the cycle (s): a reading not taken this
    # cycle cannot confirm headroom, since the EVs may have ramped up since it was taken.
    grid_age_s: float = 0.0
    # The inverter's battery power (> 0 discharging), kept when the BMS is stale: the base
    # load measured from the grid must still take out what the battery gives.
    inverter_battery_kw: float | None = None
    # One per circuit with a `meter` (agent/control/circuit_meters.py).
    circuit_meters: tuple[CircuitMeterState, ...] = ()

    def connectors(self):
        for charger in self.chargers:
            yield from charger.connectors
