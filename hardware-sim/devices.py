"""Emulated devices: each binds a part of the station model to a profile's register image.

`refresh()` encodes the model's current truth into the registers (device units: W, Wh,
0.1 %...); `write()` decodes what a client wrote and applies it to the model at once.
"""

from __future__ import annotations

from .faults import Fault
from .physics import ChargerModel, StationModel
from .profile import SimProfile
from .registers import RegisterImage, Slot


class EmulatedDevice:
    kind = ""

    def __init__(self, name: str, unit: int, profile: SimProfile, model: StationModel,
                 connectors: int = 1) -> None:
        self.name = name
        self.unit = unit
        self.profile = profile
        self.model = model
        self.connectors = connectors
        self.image = RegisterImage(profile, connectors)
        self.fault: Fault | None = None
        self.refresh()

    def _set(self, name: str, value: float | str, idx: int = 0) -> None:
        if self.image.has(name, idx):  # a profile may leave optional points out
            self.image.set(name, value, idx)

    def refresh(self) -> None:
        raise NotImplementedError

    def write(self, address: int, values: list[int]) -> bool:
        """Apply a client's register write; False if any register is not writable."""
        written = self.image.write(address, values)
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

    def refresh(self) -> None:
        m = self.model.meter
        self._set("power_total", m.total_kw * 1000.0)
        for i in range(3):
            self._set(f"power_l{i + 1}", m.power_kw[i] * 1000.0)
            self._set(f"voltage_l{i + 1}", m.voltage[i])
            self._set(f"current_l{i + 1}", m.current[i])
        self._set("energy_import", m.import_kwh * 1000.0)
        self._set("energy_export", m.export_kwh * 1000.0)
        self._set("frequency", m.frequency)


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

    def apply(self, slot: Slot, value: float | str) -> None:
        if slot.point.name == "battery_setpoint" and isinstance(value, float | int):
            # The inverter accepts any setpoint; the BMS limits clamp it in the physics.
            self.model.battery_setpoint_kw = float(value) / 1000.0 if self.model.battery else 0.0


def _to_kw(value: float, unit: str, profile: SimProfile) -> float:
    if unit == "kW":
        return value
    if unit == "A":  # per-phase current limit, three phases at 230 V unless the profile says
        return value * 3 * 230.0 / 1000.0
    return value / 1000.0  # W


def _from_kw(kw: float, unit: str) -> float:
    if unit == "kW":
        return kw
    if unit == "A":
        return kw * 1000.0 / (3 * 230.0)
    return kw * 1000.0


class ChargerDevice(EmulatedDevice):
    kind = "charger"

    def __init__(self, name: str, unit: int, profile: SimProfile, model: StationModel) -> None:
        self.charger: ChargerModel = model.chargers[name]
        super().__init__(name, unit, profile, model, len(self.charger.connectors))

    def _unit(self, name: str) -> str:
        point = self.profile.points.get(name)
        return point.unit if point else "W"

    def refresh(self) -> None:
        c = self.charger
        self._set("max_power", _from_kw(c.spec.max_kw, self._unit("max_power")))
        self._set("fallback_limit", _from_kw(c.fallback_kw, self._unit("fallback_limit")))
        self._set("comm_timeout", c.comm_timeout_s)
        for conn in c.connectors:
            i = conn.idx
            self._set("state", conn.state, i)
            self._set("power", conn.power_kw * 1000.0, i)
            self._set("session_energy", conn.session_energy_kwh * 1000.0, i)
            ev = conn.ev
            announced = ev is not None and ev.announces_max
            self._set("ev_max_power", ev.accept_kw() * 1000.0 if ev is not None and announced
                      else 0.0, i)  # fmt: skip
            self._set("power_limit", _from_kw(conn.commanded_kw, self._unit("power_limit")), i)
            self._set("soc", conn.ev.soc * 100.0 if conn.ev else 0.0, i)

    def apply(self, slot: Slot, value: float | str) -> None:
        if isinstance(value, str):
            return
        now = self.model.t
        name = slot.point.name
        if name == "heartbeat":
            self.charger.heartbeat(now)
        elif name == "power_limit":
            self.charger.write_limit(slot.idx, _to_kw(value, slot.point.unit, self.profile), now)
        elif name == "fallback_limit":
            self.charger.fallback_kw = max(0.0, _to_kw(value, slot.point.unit, self.profile))
        elif name == "comm_timeout":
            self.charger.comm_timeout_s = max(1.0, float(value))
