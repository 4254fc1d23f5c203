"""Emulated devices: each binds a part of the station model to a profile's register image.

`refresh()` encodes the model's current truth into the registers (device units: W, Wh,
0.1 %...); `write()` decodes what a client wrote and applies it to the model at once.
"""

from __future__ import annotations

from .faults import Fault
from .physics import ChargerModel, MeterReading, StationModel
from .profile import SimProfile
from .registers import RegisterImage, Slot
from .sunspec_image import SunSpecImage


class EmulatedDevice:
    kind = ""

    def __init__(self, name: str, unit: int, profile: SimProfile, model: StationModel,
                 connectors: int = 1) -> None:
        self.name = name
        self.unit = unit
        self.profile = profile
        self.model = model
        self.connectors = connectors
        if profile.sunspec:
            # SunSpec maps are laid out by pysunspec2 from the published model definitions
            self.image: RegisterImage | SunSpecImage = SunSpecImage(profile.name, unit,
                                                                    profile.directory)
            self.profile = self.image.profile
        else:
            self.image = RegisterImage(profile, connectors, unit)
        self.fault: Fault | None = None
        self.refresh()

    def _set(self, name: str, value: float | str, idx: int = 0) -> None:
        if self.image.has(name, idx):  # a profile may leave optional points out
            try:
                self.image.set(name, value, idx)
            except ValueError:  # a state this device's map has no code for: leave it
                pass

    def _set_kw(self, name: str, kw: float, idx: int = 0, phases: int | None = None) -> None:
        """A power (kW) or energy (kWh) in the point's own unit (W, Wh, kW, kWh or A)."""
        point = self.profile.points.get(name)
        if point is not None:
            self._set(name, _from_kw(kw, point.unit, self.profile, phases), idx)

    def refresh(self) -> None:
        raise NotImplementedError

    @property
    def units(self) -> list[int]:
        """Every unit id this device answers on."""
        return self.image.units

    def write(self, address: int, values: list[int], unit: int | None = None) -> bool:
        """Apply a client's register write; False if any register is not writable."""
        written = self.image.write(self.unit if unit is None else unit, address, values)
        if written is None:
            return False
        for slot, value in written:
            self.apply(slot, value)
        self.refresh()
        return True

    def apply(self, slot: Slot, value: float | str) -> None:
        """A writable point was written (subclasses with writable points override)."""


class MeterDevice(EmulatedDevice):
    kind = "meter"

    def reading(self) -> MeterReading:
        return self.model.meter

    def refresh(self) -> None:
        m = self.reading()
        self._set("power_total", m.total_kw * 1000.0)
        for i in range(3):
            self._set(f"power_l{i + 1}", m.power_kw[i] * 1000.0)
            self._set(f"voltage_l{i + 1}", m.voltage[i])
            self._set(f"current_l{i + 1}", m.current[i])
        self._set("energy_import", m.import_kwh * 1000.0)
        self._set("energy_export", m.export_kwh * 1000.0)
        self._set("frequency", m.frequency)


class CircuitMeterDevice(MeterDevice):
    """A sub-board's meter: the sum of what the chargers and base load below it draw, per
    phase (sub-circuits included)."""

    def __init__(self, name: str, unit: int, profile: SimProfile, model: StationModel,
                 circuit_id: str) -> None:
        self.circuit_id = circuit_id
        super().__init__(name, unit, profile, model)

    def reading(self) -> MeterReading:
        return self.model.circuit_meters[self.circuit_id]


class BmsDevice(EmulatedDevice):
    kind = "battery"

    def refresh(self) -> None:
        b = self.model.battery
        assert b is not None
        self._set("soc", b.soc * 100.0)
        self._set("soh", b.soh * 100.0)
        self._set("power", b.power_kw * 1000.0)
        self._set("max_charge_power", b.allowed_charge_kw * 1000.0)
        self._set("max_discharge_power", b.allowed_discharge_kw * 1000.0)
        # SunSpec 802: the BMS's instantaneous limits as currents at the battery voltage
        self._set("max_charge_current", b.allowed_charge_kw * 1000.0 / b.voltage)
        self._set("max_discharge_current", b.allowed_discharge_kw * 1000.0 / b.voltage)
        self._set("voltage", b.voltage)
        self._set("current", b.power_kw * 1000.0 / b.voltage)
        self._set("temp_min", b.temp_min_c)
        self._set("temp_max", b.temp_c)
        self._set("cell_v_min", b.cell_v_min)
        self._set("cell_v_max", b.cell_v_max)
        self._set("alarms", b.alarms)
        self._set("capacity", b.capacity_kwh)


class InverterDevice(EmulatedDevice):
    kind = "inverter"

    def refresh(self) -> None:
        m = self.model
        self._set("pv_power", m.pv_kw * 1000.0)
        self._set("battery_power", m.battery_kw * 1000.0)
        self._set("ac_power", (m.pv_kw + m.battery_kw) * 1000.0)
        self._set("status", m.inverter_status)
        self._set("battery_setpoint", m.battery_setpoint_kw * 1000.0)
        self._set("pv_mppt_1", m.pv_kw * 1000.0)  # SunSpec 160: all PV on the first MPPT
        for i in (2, 3, 4):
            self._set(f"pv_mppt_{i}", 0.0)
        if m.battery is not None and self.image.has("storage_max_charge"):
            self._set("storage_max_charge", m.battery.max_discharge_kw * 1000.0)

    def apply(self, slot: Slot, value: float | str) -> None:
        if not isinstance(value, float | int) or self.model.battery is None:
            return
        name = slot.point.name
        # The inverter accepts any setpoint; the BMS limits clamp it in the physics.
        if name == "battery_setpoint":
            self.model.battery_setpoint_kw = float(value) / 1000.0
        elif name.startswith("der_power_set"):  # SunSpec 704: WSet, enabled by WSetEna
            if self.image.get("der_power_set_enable") == 1:
                self.model.battery_setpoint_kw = float(self.image.get("der_power_set")) / 1000.0
        elif name.startswith("storage_"):  # SunSpec 124: % of WChaMax by StorCtl_Mod bits
            mode = int(self.image.get("storage_control_mode") or 0)
            w_max = float(self.image.get("storage_max_charge"))
            out_pct = float(self.image.get("storage_discharge_rate"))
            in_pct = float(self.image.get("storage_charge_rate"))
            kw = 0.0
            if mode & 2:
                kw = w_max * out_pct / 100.0 / 1000.0
            elif mode & 1:
                kw = -w_max * in_pct / 100.0 / 1000.0
            self.model.battery_setpoint_kw = kw


def _to_kw(value: float, unit: str, profile: SimProfile, phases: int | None = None) -> float:
    """`phases`: the conductors a connector charges on now (a phase switch), else the map's."""
    if unit in ("kW", "kWh"):
        return value
    if unit == "A":  # per-phase current limit, at the connector's phases and the voltage
        return value * (phases or profile.phases) * profile.voltage / 1000.0
    return value / 1000.0  # W, Wh


def _from_kw(kw: float, unit: str, profile: SimProfile, phases: int | None = None) -> float:
    if unit in ("kW", "kWh"):
        return kw
    if unit == "A":
        return kw * 1000.0 / ((phases or profile.phases) * profile.voltage)
    return kw * 1000.0


class ChargerDevice(EmulatedDevice):
    kind = "charger"

    def __init__(self, name: str, unit: int, profile: SimProfile, model: StationModel) -> None:
        self.charger: ChargerModel = model.chargers[name]
        limit = profile.points.get("power_limit")
        self.charger.limit_in_amps = limit is not None and limit.unit == "A"
        super().__init__(name, unit, profile, model, len(self.charger.connectors))

    def refresh(self) -> None:
        c = self.charger
        self._set_kw("max_power", c.spec.max_kw)
        self._set_kw("fallback_limit", c.fallback_kw)
        self._set("comm_timeout", c.comm_timeout_s)
        # Keba and Vestel say "vehicle connected" and "charging" in two registers.
        split = "charging" in self.profile.points
        for conn in c.connectors:
            i = conn.idx
            charging = conn.state == "C"
            self._set("state", "B" if split and charging else conn.state, i)
            self._set("charging", "yes" if charging else "no", i)
            self._set_kw("power", conn.power_kw, i)
            self._set_kw("session_energy", conn.session_energy_kwh, i)
            ev = conn.ev
            announced = ev is not None and ev.announces_max
            self._set_kw("ev_max_power", ev.accept_kw() if ev is not None and announced else 0.0, i)
            self._set_kw("power_limit", conn.commanded_kw, i, conn.phases)
            self._set_kw("applied_limit", conn.commanded_kw, i, conn.phases)
            self._set("soc", conn.ev.soc * 100.0 if conn.ev else 0.0, i)
            self._set("charge_phases", conn.phases, i)  # the count in effect
            grid = c.phase_kw(conn)  # maps with per-conductor currents: its L1 on rotation[0]...
            for q, p in enumerate(c.spec.rotation):
                self._set(f"current_l{q + 1}", abs(grid[p]) * 1000.0 / 230.0, i)
            self._set_kw("fallback_limit", c.fallback_kw, i)  # per socket on Alfen

    def apply(self, slot: Slot, value: float | str) -> None:
        now = self.model.t
        name = slot.point.name
        if name == "heartbeat":  # any write, whatever its value ("alive" on Vestel)
            self.charger.heartbeat(now)
            return
        if isinstance(value, str):
            return
        if name == "power_limit":
            phases = self.charger.connector(slot.idx).phases
            self.charger.write_limit(slot.idx, _to_kw(value, slot.point.unit, self.profile,
                                                      phases), now)  # fmt: skip
        elif name == "charge_phases" and self.profile.phase_switch_pause_s is not None:
            self.charger.switch_phases(slot.idx, int(value), now,
                                       self.profile.phase_switch_pause_s)
        elif name == "fallback_limit":
            self.charger.fallback_kw = max(0.0, _to_kw(value, slot.point.unit, self.profile))
        elif name == "comm_timeout":
            self.charger.comm_timeout_s = max(1.0, float(value))
