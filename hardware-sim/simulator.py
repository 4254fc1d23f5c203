"""The simulator: a station model, its emulated devices and their Modbus servers.

    async with Simulator(station, time_factor=1.0, rtu_meter=True, seed=0) as sim:
        sim.endpoints   # JSON-able: where each device answers, with unit id and profile

Unit ids are unique across the station (meter 1, BMS 2, inverter 3, chargers 10, 11, ...)
so that the same devices could share one bus; each device has its own TCP port, and the
grid meter and the BMS also share one RTU line on a pseudo-terminal.

Time: by default the physics follows the event loop's clock times `time_factor`, stepped
by a background task. Pass `clock=ManualClock()` to drive it from a test with
`sim.advance(seconds)` instead: nothing then moves unless the test says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from .devices import (
    BmsDevice,
    ChargerDevice,
    CircuitMeterDevice,
    EmulatedDevice,
    InverterDevice,
    MeterDevice,
)
from .faults import make_fault
from .modbus import Responder, RtuLine, TcpEndpoint
from .physics import MAX_SUBSTEP_S, Ev, StationModel
from .profile import load_profile
from .station import StationSpec, parse_station

log = logging.getLogger("hardware_sim")

TICK_S = 0.05  # wall-clock period of the physics task
METER_UNIT, BMS_UNIT, INVERTER_UNIT, FIRST_CHARGER_UNIT = 1, 2, 3, 10
FIRST_CIRCUIT_METER_UNIT = 4  # sub-board meters: 4..9
MAX_UNIT = 247  # Modbus unit ids run 1..247


_KEEP = object()  # "argument not given" for Simulator.set


def _kw_or_none(value: object, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: must be a number of kW or null")
    return float(value)


class ManualClock:
    """An injected clock: simulated time moves only through `Simulator.advance()`."""


class Simulator:
    def __init__(self, station: dict | StationSpec, *, time_factor: float = 1.0,
                 rtu_meter: bool = True, seed: int = 0, clock: ManualClock | None = None,
                 base_port: int = 0, host: str = "127.0.0.1", random_evs_per_hour: float = 0.0,
                 control: bool = False, profiles_dir: Path | None = None,
                 profiles: dict[str, str] | None = None) -> None:
        if time_factor <= 0:
            raise ValueError("time_factor: must be > 0")
        self.spec = station if isinstance(station, StationSpec) else parse_station(station)
        self.time_factor = time_factor
        self.manual = clock is not None
        self.model = StationModel(self.spec, seed=seed, random_evs_per_hour=random_evs_per_hour)
        self._seed = seed
        self._host = host
        self._base_port = base_port
        self._want_rtu = rtu_meter
        self._want_control = control
        self.devices: dict[str, EmulatedDevice] = {}
        self._profiles: dict[str, str] = {}
        # device name (meter, bms, inverter, a charger id) -> profile to serve instead of
        # the sim-* one: vendor and SunSpec maps, so tests run on the real register maps
        self._chosen = dict(profiles or {})
        self._build_devices(profiles_dir)
        unknown = set(self._chosen) - set(self.devices)
        if unknown:
            raise ValueError(f"profiles: no device named {', '.join(sorted(unknown))}")
        self.tcp: dict[str, TcpEndpoint] = {}
        self.rtu: RtuLine | None = None
        self.control: Any = None  # control.ControlServer when control=True
        self._ticker: asyncio.Task[None] | None = None
        self._drop_timers: dict[str, asyncio.TimerHandle] = {}
        self.stop_requested = asyncio.Event()  # set by the control interface's "stop"

    def _build_devices(self, profiles_dir: Path | None) -> None:
        def profile(device: str, default: str):  # noqa: ANN202 - local helper
            name = self._chosen.get(device, default)
            self._profiles[device] = name
            return load_profile(name, profiles_dir)

        self.devices["meter"] = MeterDevice("meter", METER_UNIT, profile("meter", "sim-meter"),
                                            self.model)
        if self.model.battery is not None:
            self.devices["bms"] = BmsDevice("bms", BMS_UNIT, profile("bms", "sim-bms"), self.model)
        if self.model.has_inverter:
            self.devices["inverter"] = InverterDevice(
                "inverter", INVERTER_UNIT, profile("inverter", "sim-inverter"), self.model)
        metered = [c for c in self.spec.circuits if c.meter]
        if len(metered) > FIRST_CHARGER_UNIT - FIRST_CIRCUIT_METER_UNIT:
            raise ValueError("circuits: at most 6 circuit meters (unit ids 4..9)")
        for k, c in enumerate(metered):
            name = f"meter:{c.id}"
            self.devices[name] = CircuitMeterDevice(
                name, FIRST_CIRCUIT_METER_UNIT + k, profile(name, "sim-meter"), self.model, c.id)
        # Bidirectional (V2G) chargers answer with the signed-limit map.
        charger_profiles = {False: "sim-charger", True: "sim-charger-v2g"}
        for i, spec in enumerate(self.spec.chargers):
            if spec.id in ("meter", "bms", "inverter"):
                raise ValueError(f"chargers[{i}].id: {spec.id!r} is reserved for a device")
            # Each device answers on its own TCP port (as behind a depot's Modbus gateways),
            # so charger unit ids may repeat: they wrap instead of running out at 238.
            unit = FIRST_CHARGER_UNIT + i % (MAX_UNIT - FIRST_CHARGER_UNIT + 1)
            self.devices[spec.id] = ChargerDevice(
                spec.id, unit, profile(spec.id, charger_profiles[spec.v2g]), self.model)

    # ---- lifecycle -----------------------------------------------------------------------
    async def __aenter__(self) -> Simulator:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        for n, (name, device) in enumerate(self.devices.items()):
            port = self._base_port + n if self._base_port else 0
            endpoint = TcpEndpoint(Responder([device], self._seed), self._host, port)
            await endpoint.start()
            self.tcp[name] = endpoint
        if self._want_rtu:
            on_line = [self.devices[n] for n in ("meter", "bms") if n in self.devices]
            self.rtu = RtuLine(Responder(on_line, self._seed))
            await self.rtu.start()
        if self._want_control:
            from .control import ControlServer

            port = self._base_port + len(self.devices) if self._base_port else 0
            self.control = ControlServer(self, self._host, port)
            await self.control.start()
        if not self.manual:
            self._ticker = asyncio.get_running_loop().create_task(self._tick_loop())

    async def close(self) -> None:
        if self._ticker:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        for timer in self._drop_timers.values():
            timer.cancel()
        if self.control is not None:
            await self.control.stop()
        for endpoint in self.tcp.values():
            await endpoint.stop()
        if self.rtu is not None:
            await self.rtu.stop()
            self.rtu = None

    async def _tick_loop(self) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time() - self.model.t / self.time_factor
        # Coarser physics steps at high acceleration keep a day replay cheap.
        substep = max(0.05, 0.01 * self.time_factor)
        while True:
            await asyncio.sleep(TICK_S)
            target = (loop.time() - t0) * self.time_factor
            self.model.advance(max(0.0, target - self.model.t), substep)
            self._refresh()

    def advance(self, seconds: float, max_substep: float = MAX_SUBSTEP_S) -> None:
        """Move simulated time on (manual clock only) and update every register.
        `max_substep`: the physics' step (a whole day in 5 s cycles: 0.25 s, the agent's
        period, is 5x faster than the default and still resolves a charger's delay)."""
        if not self.manual:
            raise RuntimeError("advance(): the simulator follows the real clock; "
                               "pass clock=ManualClock() to drive it")
        self.model.advance(seconds, max_substep)
        self._refresh()

    def _refresh(self) -> None:
        self.model.settle()
        for device in self.devices.values():
            device.refresh()

    # ---- description ---------------------------------------------------------------------
    @property
    def endpoints(self) -> dict[str, Any]:
        out: dict[str, Any] = {"chargers": {}}
        if self.spec.circuits:
            out["circuitMeters"] = {}
        for name, device in self.devices.items():
            entry: dict[str, Any] = {"tcp": self.tcp[name].address if name in self.tcp else None,
                                     "unit": device.unit, "profile": self._profiles[name]}
            if self.rtu is not None and name in ("meter", "bms"):
                entry["rtu"] = self.rtu.path
            if isinstance(device, ChargerDevice):
                entry.update(connectors=device.connectors, kind=device.charger.spec.kind,
                             maxPower=device.charger.spec.max_kw, v2g=device.charger.spec.v2g)
                out["chargers"][name] = entry
            elif isinstance(device, CircuitMeterDevice):
                out["circuitMeters"][device.circuit_id] = entry
            else:
                out[name] = entry
        return out

    # ---- EVs, environment, faults --------------------------------------------------------
    def plug(self, charger_id: str, idx: int, *, max_kw: float, capacity_kwh: float,
             soc: float, energy_needed_kwh: float, v2g: bool = False,
             session_id: str = "", departure_in_s: float | None = None,
             announces_max: bool = True, phases: int = 3) -> None:
        if not (max_kw > 0 and capacity_kwh > 0 and 0 <= soc <= 1 and energy_needed_kwh >= 0):
            raise ValueError("plug: need max_kw > 0, capacity_kwh > 0, 0 <= soc <= 1, "
                             "energy_needed_kwh >= 0")
        if phases not in (1, 2, 3):
            raise ValueError("plug: phases must be 1, 2 or 3")
        departure = self.model.t + departure_in_s if departure_in_s is not None else None
        self.model.plug(charger_id, idx, Ev(max_kw, capacity_kwh, soc, energy_needed_kwh, v2g,
                                            session_id, departure, announces_max=announces_max,
                                            phases=phases))
        self._refresh()

    def pause_ev(self, charger_id: str, idx: int, seconds: float) -> None:
        """The EV on the connector pauses by itself for `seconds` (simulated): it draws
        nothing, its limit untouched, then takes up what its limit allows again (an EV
        balancing its cells or preconditioning; physics.py)."""
        ev = self.model.chargers[charger_id].connector(idx).ev if charger_id in self.model.chargers else None
        if ev is None or seconds < 0:
            raise ValueError(f"pause_ev: no EV on {charger_id}/{idx}, or seconds < 0")
        ev.paused_until = self.model.t + seconds
        self._refresh()

    def unplug(self, charger_id: str, idx: int) -> None:
        self.model.unplug(charger_id, idx)
        self._refresh()

    def set(self, *, base_load_kw: float | None | object = _KEEP,
            pv_kw: float | None | object = _KEEP) -> None:
        """Override the base load / PV (kW); None returns to the scenario or PV curve;
        a value not passed stays as it is."""
        if base_load_kw is not _KEEP:
            self.model.base_load_override = _kw_or_none(base_load_kw, "base_load_kw")
        if pv_kw is not _KEEP:
            self.model.pv_override = _kw_or_none(pv_kw, "pv_kw")
        self._refresh()

    def _device(self, name: str) -> EmulatedDevice:
        try:
            return self.devices[name]
        except KeyError:
            raise ValueError(f"device: unknown device {name!r} "
                             f"(one of {', '.join(self.devices)})") from None

    def inject(self, device: str, fault: str, **params: Any) -> None:
        target = self._device(device)
        f = make_fault(fault, **params)
        self.clear(device)
        target.fault = f
        if f.kind == "drop":
            loop = asyncio.get_running_loop()
            if device in self.tcp:
                loop.create_task(self.tcp[device].drop(f.duration))
            self._drop_timers[device] = loop.call_later(f.duration, self._end_drop, device)

    def _end_drop(self, device: str) -> None:
        self._drop_timers.pop(device, None)
        target = self.devices[device]
        if target.fault is not None and target.fault.kind == "drop":
            target.fault = None

    def clear(self, device: str) -> None:
        self._device(device).fault = None
        timer = self._drop_timers.pop(device, None)
        if timer is not None:
            timer.cancel()
            if device in self.tcp:  # reopen at once
                asyncio.get_running_loop().create_task(self.tcp[device].drop(0.0))

    # ---- truth for tests -----------------------------------------------------------------
    @property
    def grid_history(self) -> list[tuple[float, float]]:
        """(simulated s, grid import kW), about every 0.1 simulated seconds."""
        return list(self.model.history)

    def overload_episodes(self, tolerance: float = 0.02) -> list[tuple[float, float, float]]:
        return self.model.overload_episodes(tolerance)

    def state(self) -> dict[str, Any]:
        m = self.model
        connectors = []
        for cid, charger in m.chargers.items():
            for conn in charger.connectors:
                ev = conn.ev
                connectors.append({
                    "chargerId": cid, "idx": conn.idx, "state": conn.state,
                    "power": conn.power_kw, "target": conn.target_kw,
                    "limit": charger.fallback_kw if charger.timed_out else conn.applied_kw,
                    "commandedLimit": conn.commanded_kw,
                    "limitWrites": conn.limit_writes,
                    "sessionEnergy": conn.session_energy_kwh,
                    "dischargedEnergy": conn.discharged_kwh,
                    "ev": None if ev is None else {
                        "sessionId": ev.session_id, "soc": ev.soc, "maxPower": ev.max_kw,
                        "acceptPower": ev.accept_kw(), "delivered": ev.delivered_kwh,
                        "energyNeeded": ev.energy_needed_kwh, "v2g": ev.v2g,
                        "phases": ev.phases},
                    "phaseCurrents": [kw * 1000.0 / 230.0 for kw in charger.phase_kw(conn)],
                    "chargePhases": conn.phases,  # in effect (a phase switch changes it)
                    "switching": conn.switching is not None,
                })
        b = m.battery
        return {
            "t": m.t, "time": m.now.isoformat().replace("+00:00", "Z"),
            "stationId": self.spec.station_id, "gridCapacity": self.spec.grid_capacity_kw,
            "gridImport": m.meter.total_kw, "gridPhases": list(m.meter.power_kw),
            "energyImport": m.meter.import_kwh, "energyExport": m.meter.export_kwh,
            "baseLoad": m.base_load_kw, "pvPower": m.pv_kw,
            "battery": None if b is None else {
                "soc": b.soc, "power": b.power_kw, "setpoint": m.battery_setpoint_kw,
                "allowedCharge": b.allowed_charge_kw, "allowedDischarge": b.allowed_discharge_kw,
                "tempMax": b.temp_c, "alarms": b.alarms},
            "chargers": {cid: {"timedOut": c.timed_out, "fallbackLimit": c.fallback_kw,
                               "commTimeout": c.comm_timeout_s, "power": c.power_kw,
                               "phaseSwitches": list(c.switches)}
                         for cid, c in m.chargers.items()},
            "connectors": connectors,
            "faults": {n: d.fault.kind for n, d in self.devices.items() if d.fault},
            "circuits": {c.id: {
                "rating": c.max_current_a, "current": list(m.circuit_meters[c.id].current),
                "power": list(m.circuit_meters[c.id].power_kw),
                "peakCurrent": list(m.breakers[c.id].peak_a),
                "overRatingS": m.breakers[c.id].over_s,
                "tripped": m.breakers[c.id].tripped_at is not None,
                "trippedAt": m.breakers[c.id].tripped_at} for c in self.spec.circuits},
            "trips": list(m.trips),
        }
