"""Capability drivers: Meter, Battery, Inverter, Charger, and the `make_device` factory.

Readings are frozen dataclasses in kW / kWh with the signs of DESIGN.md (grid > 0 imports,
battery > 0 discharges, charger > 0 charges the EV). Device units (W, Wh, A, scale factors)
are converted here, once. A field is None when the profile lacks it or its value was invalid.
`ts` is the Unix time (UTC seconds) at which the read completed.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from drivers import fallback_check, sunspec_control
from drivers.device import DeviceError, Key, ModbusDevice, NotSupported, Value
from drivers.endpoint import Endpoint
from drivers.profile import Point, Profile, load_profile
from drivers.transport import Bus, open_endpoint
from drivers.units import from_kw, to_kw

log = logging.getLogger(__name__)

STATES = ("A", "B", "C", "D", "E", "F")


def _neg(kw: float | None) -> float | None:
    return None if kw is None else -kw


def _num(value: Value) -> float | None:
    return value if isinstance(value, float) else None


@dataclass(frozen=True, slots=True)
class MeterReading:
    power_kw: float | None
    phases_kw: tuple[float, float, float] | None
    energy_import_kwh: float | None
    energy_export_kwh: float | None
    ts: float
    # Per-phase currents (A, L1..L3, unsigned), where the map has all three (circuit meters).
    currents_a: tuple[float, float, float] | None = None


@dataclass(frozen=True, slots=True)
class BatteryReading:
    soc_pct: float | None
    soh_pct: float | None
    power_kw: float | None
    max_charge_kw: float | None
    max_discharge_kw: float | None
    temp_min_c: float | None
    temp_max_c: float | None
    cell_v_min: float | None
    cell_v_max: float | None
    alarms: int | None
    ts: float


@dataclass(frozen=True, slots=True)
class InverterReading:
    pv_kw: float | None
    battery_kw: float | None
    ts: float


@dataclass(frozen=True, slots=True)
class ConnectorReading:
    idx: int
    state: str | None  # IEC 61851 'A'..'F'
    power_kw: float | None
    session_energy_kwh: float | None
    ev_max_kw: float | None
    limit_kw: float | None
    soc_pct: float | None = None  # the EV's state of charge, where the charger knows it
    vehicle_id: str | None = None  # who authorised the session, where the charger says (OCPP id tag)
    transaction_id: str | None = None  # the charger's own session id, where it has one (OCPP)
    # A per conductor (the charger's L1, L2, L3, before its phase rotation), where the map
    # has all three (Alfen 320/322/324): what an EV's phase count is learned from.
    currents_a: tuple[float, float, float] | None = None
    # When power_kw was measured, where that is older than the read (OCPP meter values arrive
    # every MeterValueSampleInterval): None means "at this read".
    power_ts: float | None = None
    # The phases the connector charges on where the map has them (Alfen 1215): 1 or 3.
    charge_phases: int | None = None
    # A limit above the agent's, in force now (an operator CSMS's profile in OCPP local
    # controller mode): the connector takes no more than this whatever the agent writes.
    cap_kw: float | None = None


@dataclass(frozen=True, slots=True)
class ChargerReading:
    connectors: tuple[ConnectorReading, ...]
    max_power_kw: float | None
    ts: float
    # Its limit is a current per phase (Alfen, Keba...): kW convert at the charger's phases.
    limit_in_amps: bool = False
    # It switches between 1 and 3 phases (`set_phases`), pausing this long to do it.
    phase_switch_pause_s: float | None = None
    # The whole charger's limit above the agent's (a CSMS's max profile), as cap_kw.
    cap_kw: float | None = None


class _Capability(ModbusDevice):
    def _kw(self, values: dict[Key, Value], name: str, idx: int | None = None) -> float | None:
        point = self.profile.point(name)
        key: Key = (name, idx) if point is not None and point.per_connector else name
        return to_kw(values.get(key), point, self.profile)


# A meter's phase powers and its total come from one measurement: they agree up to
# rounding and the phases being sampled a moment apart. Beyond this they contradict each
# other (random register contents pass range checks often, a consistent set almost never).
PHASE_SUM_TOLERANCE_KW = 0.5
PHASE_SUM_TOLERANCE_FRACTION = 0.03


class Meter(_Capability):
    kind = "meter"

    def cross_check(self, values: dict[Key, float]) -> dict[Key, str]:
        """When the total and all three phase powers were read, they must add up."""
        names = ("power_total", "power_l1", "power_l2", "power_l3")
        kw = [to_kw(values.get(n), self.profile.point(n), self.profile) for n in names]
        if any(x is None for x in kw):
            return {}
        total, *phases = (float(x) for x in kw if x is not None)
        gap = abs(sum(phases) - total)
        scale = max(abs(total), sum(abs(x) for x in phases))
        if gap <= PHASE_SUM_TOLERANCE_KW + PHASE_SUM_TOLERANCE_FRACTION * scale:
            return {}
        why = f"phases add up to {sum(phases):.3f} kW, total says {total:.3f} kW"
        return {n: f"{n}: {why}" for n in names}

    async def read(self) -> MeterReading:
        v = await self.read_values()
        l1, l2, l3 = (self._kw(v, f"power_l{i}") for i in (1, 2, 3))
        phases_kw = (l1, l2, l3) if l1 is not None and l2 is not None and l3 is not None else None
        power = self._kw(v, "power_total")
        if power is None and "power_total" not in self.profile and phases_kw is not None:
            power = sum(phases_kw)  # meters without a total register
        imported, exported = self._kw(v, "energy_import"), self._kw(v, "energy_export")
        if self.invert:  # mounted the other way round: its import is the grid's export
            power = _neg(power)
            phases_kw = tuple(-x for x in phases_kw) if phases_kw else None  # type: ignore[assignment]
            imported, exported = exported, imported
        amps = [_num(v.get(f"current_l{i}")) for i in (1, 2, 3)]
        currents = tuple(abs(a) for a in amps if a is not None)
        return MeterReading(power, phases_kw, imported, exported, self._wallclock(),
                            currents if len(currents) == 3 else None)  # type: ignore[arg-type]


class Battery(_Capability):
    kind = "battery"

    async def read(self) -> BatteryReading:
        v = await self.read_values()
        alarms = v.get("alarms")
        soc = _num(v.get("soc"))
        return BatteryReading(
            soc_pct=soc if soc is not None else _num(v.get("soc_124")), soh_pct=_num(v.get("soh")),
            power_kw=_neg(self._kw(v, "power")) if self.invert else self._kw(v, "power"),
            max_charge_kw=self._limit_kw(v, "charge"),
            max_discharge_kw=self._limit_kw(v, "discharge"),
            temp_min_c=_num(v.get("temp_min")), temp_max_c=_num(v.get("temp_max")),
            cell_v_min=_num(v.get("cell_v_min")), cell_v_max=_num(v.get("cell_v_max")),
            alarms=int(alarms) if isinstance(alarms, float) else None,
            ts=self._wallclock(),
        )


    def _limit_kw(self, v: dict[Key, Value], direction: str) -> float | None:
        """The power the battery accepts now: the BMS's instantaneous current limit times
        the battery voltage where the profile has them (SunSpec 802 AChaMax/ADisChaMax),
        else the profile's power limit (124's WChaMax bounds both directions)."""
        amps = _num(v.get(f"max_{direction}_current"))
        volts = _num(v.get("voltage"))
        if amps is not None and volts is not None:
            return amps * volts / 1000.0
        kw = self._kw(v, f"max_{direction}_power")
        if kw is None and direction == "discharge" and "max_discharge_power" not in self.profile:
            kw = self._kw(v, "max_charge_power")
        return kw


class Inverter(_Capability):
    kind = "inverter"

    async def read(self) -> InverterReading:
        v = await self.read_values()
        # Per-MPPT DC power (SunSpec 160) excludes a hybrid's battery flow, unlike 103's DCW.
        mppt = [self._kw(v, p.name) for p in self.profile.points if p.name.startswith("pv_mppt_")]
        known = [x for x in mppt if x is not None]
        pv = sum(known) if known else self._kw(v, "pv_power")
        battery = self._kw(v, "battery_power")
        return InverterReading(pv, _neg(battery) if self.invert else battery, self._wallclock())

    async def set_battery_setpoint(self, kw: float) -> None:
        """Battery power setpoint, > 0 discharges."""
        if self.profile.sunspec and "battery_setpoint" not in self.profile:
            await sunspec_control.set_battery_setpoint(self, kw)
            return
        point = self._writable("battery_setpoint")
        await self.write_point("battery_setpoint", from_kw(kw, point, self.profile))

    def _writable(self, name: str) -> Point:
        point = self.profile.point(name)
        if point is None or not point.writable:
            raise NotSupported(f"{self.profile.path.name}: no writable {name!r}")
        return point


class Charger(_Capability):
    kind = "charger"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits: dict[int, float] = {}
        self._beat = 0
        self._phases: dict[int, int] = {}  # per connector, from `charge_phases` (Alfen 1215)

    def _conn_profile(self, idx: int | None) -> Profile:
        """The profile with the connector's phase count, for A <-> kW conversions."""
        phases = self._phases.get(idx or 1)
        if phases is None or phases == self.profile.phases:
            return self.profile
        return replace(self.profile, phases=phases)

    def _kw(self, values: dict[Key, Value], name: str, idx: int | None = None) -> float | None:
        point = self.profile.point(name)
        key: Key = (name, idx) if point is not None and point.per_connector else name
        return to_kw(values.get(key), point, self._conn_profile(idx))

    async def read(self) -> ChargerReading:
        v = await self.read_values()
        for idx in range(1, self.connectors + 1):
            phases = v.get(("charge_phases", idx))
            if phases in (1.0, 3.0):
                self._phases[idx] = int(phases)  # type: ignore[arg-type]
        # The limit in force: the charger's applied limit where it reports one (Alfen 1206,
        # the lowest of every limit acting), else the last setpoint written.
        limit_name = "applied_limit" if "applied_limit" in self.profile else "power_limit"
        conns = []
        for idx in range(1, self.connectors + 1):
            state = v.get(("state", idx))
            if state is not None and state not in STATES:
                state = self._invalid(("state", idx), "invalid", f"state {state!r} is not A-F")
            if state == "B" and v.get(("charging", idx)) == "yes":
                # Keba, Vestel: the cable register says "vehicle connected", a second
                # register says "charging"; together they are state C.
                state = "C"
            conns.append(ConnectorReading(
                idx=idx, state=state if isinstance(state, str) else None,
                power_kw=self._kw(v, "power", idx),
                session_energy_kwh=self._kw(v, "session_energy", idx),
                ev_max_kw=self._kw(v, "ev_max_power", idx),
                limit_kw=self._kw(v, limit_name, idx),
                soc_pct=_num(v.get(("soc", idx))),
                currents_a=self._currents(v, idx),
                charge_phases=self._phases.get(idx),
            ))
        limit = self.profile.point("power_limit")
        return ChargerReading(tuple(conns), self._kw(v, "max_power"), self._wallclock(),
                              limit_in_amps=limit is not None and limit.unit == "A",
                              phase_switch_pause_s=self.profile.phase_switch_pause_s)

    def _currents(self, values: dict[Key, Value], idx: int) -> tuple[float, float, float] | None:
        """The connector's current per conductor (A, unsigned), when all three are read."""
        out = []
        for q in (1, 2, 3):
            point = self.profile.point(f"current_l{q}")
            key: Key = (f"current_l{q}", idx) if point is not None and point.per_connector \
                else f"current_l{q}"
            value = _num(values.get(key))
            if value is None:
                return None
            out.append(abs(value))
        return (out[0], out[1], out[2])

    def _check_idx(self, idx: int) -> None:
        if not 1 <= idx <= self.connectors:
            raise ValueError(f"connector {idx}: this charger has connectors 1..{self.connectors}")

    @property
    def bidirectional(self) -> bool:
        """The profile says power_limit accepts negative values (V2G discharge): the device
        key `bidirectional = true`, or a power_limit point whose valid range goes below 0."""
        point = self.profile.point("power_limit")
        return self.profile.bidirectional or (
            point is not None and point.min is not None and point.min < 0
        )

    async def set_limit(self, idx: int, kw: float) -> None:
        """Power limit of one connector (kW >= 0; < 0 discharges the EV, only on bidirectional
        profiles); remembered so heartbeat() can renew it."""
        self._check_idx(idx)
        if not math.isfinite(kw) or (kw < 0 and not self.bidirectional):
            raise ValueError(f"limit: {kw} kW must be >= 0 ({self.profile.path.name} is not "
                             "bidirectional)")
        point = self.profile.point("power_limit")
        if point is None or not point.writable:
            raise NotSupported(f"{self.profile.path.name}: no writable 'power_limit'")
        await self.write_point("power_limit", from_kw(kw, point, self._conn_profile(idx)), idx)
        self._limits[idx] = kw

    async def set_phases(self, idx: int, phases: int) -> None:
        """Switch a connector to charge on 1 or 3 phases (profiles with the capability,
        `phase_switch_pause_s`); the charger pauses charging to do it. Until a read shows
        the new count, amps still convert at the old one."""
        self._check_idx(idx)
        if phases not in (1, 3):
            raise ValueError(f"phases: {phases} is not 1 or 3")
        if self.profile.phase_switch_pause_s is None:
            raise NotSupported(f"{self.profile.path.name}: cannot switch phases")
        await self.write_point("charge_phases", float(phases), idx)

    async def heartbeat(self) -> None:
        """Reset the charger's communication timer: write the heartbeat register, or on
        chargers whose limit carries its own validity time (Alfen), rewrite the last limits."""
        point = self.profile.point("heartbeat")
        if point is not None and point.writable:
            if point.enum:  # a fixed "alive" value (Vestel: write 1 to 6000)
                await self.write_point("heartbeat", point.enum[0][1])
                return
            self._beat = (self._beat + 1) % 0x10000
            await self.write_point("heartbeat", float(self._beat))
            return
        for idx, kw in sorted(self._limits.items()):
            await self.set_limit(idx, kw)

    async def set_fallback(self, kw: float, timeout_s: float) -> None:
        """Limit every connector falls back to when the agent is silent for timeout_s."""
        if not kw >= 0 or not timeout_s > 0:
            raise ValueError("fallback: kw must be >= 0 and timeout_s > 0")
        point = self.profile.point("fallback_limit")
        if point is not None and point.readable and not point.writable:
            await fallback_check.check_configured(self, kw)
            return
        if point is None or not point.writable:
            raise NotSupported(f"{self.profile.path.name}: fallback limit is not writable over "
                               "Modbus; set it in the charger's configuration tool")
        await self.write_point("fallback_limit", from_kw(kw, point, self.profile))
        timeout_point = self.profile.point("comm_timeout")
        if timeout_point is not None and timeout_point.writable:
            await self.write_point("comm_timeout", float(timeout_s))


CLASSES: dict[str, type[_Capability]] = {
    "meter": Meter, "battery": Battery, "inverter": Inverter, "charger": Charger,
}


def make_device(kind: str, endpoint: str | Endpoint | Bus, unit_id: int,
                profile: str | Path | Profile, *, timeout_s: float = 0.2,
                connectors: int | None = None, **kwargs: Any) -> Meter | Battery | Inverter | Charger:
    """A capability driver on a shared endpoint. `profile` is a Profile, a path, or a name
    under config/profiles/. Extra keyword arguments go to ModbusDevice (retries,
    offline_after, clock, wallclock)."""
    cls = CLASSES.get(kind)
    if cls is None:
        raise ValueError(f"kind: {kind!r} is not one of {', '.join(CLASSES)}")
    prof = profile if isinstance(profile, Profile) else load_profile(profile)
    if prof.kind != kind:
        raise ValueError(f"profile: {prof.path.name} describes a {prof.kind}, not a {kind}")
    bus = endpoint if isinstance(endpoint, Bus) else open_endpoint(endpoint)
    return cls(bus, unit_id, prof, timeout_s=timeout_s, connectors=connectors, **kwargs)  # type: ignore[return-value]


__all__ = [
    "Battery", "BatteryReading", "Charger", "ChargerReading", "ConnectorReading", "DeviceError",
    "Inverter", "InverterReading", "Meter", "MeterReading", "NotSupported", "make_device",
]
