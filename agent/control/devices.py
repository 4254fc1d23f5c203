"""The station's devices as the control loop sees them, and the cycle's concurrent reads.

One asyncio task per Modbus endpoint reads that endpoint's devices in turn (devices on one
RS-485 line or gateway share its connection); endpoints are read concurrently. A read
still running at the deadline is left to finish rather than cancelled (cancelling a
request mid-frame would desynchronise the line): its device's values simply age, and the
next cycle does not start a second read on that endpoint while it runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.config.settings import AgentSettings, DeviceSettings
from agent.control.stats import CycleStats
from agent.model.clock import Clock
from agent.model.snapshot import (
    BatteryState,
    ChargerState,
    CircuitMeterState,
    ConnectorState,
    Snapshot,
)

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Latest:
    reading: Any = None
    at: float = float("-inf")  # monotonic time of the last good read


class StationDevices:
    """Drivers for every configured device, grouped by endpoint."""

    # Reached over the network: the control loop awaits its reads and writes. A device set
    # read and written by plain calls (agent/control/virtual.py) says True.
    instant = False

    def __init__(self, settings: AgentSettings, make_device: Callable[..., Any] | None = None):
        if make_device is None:
            from drivers import make_device as make

            make_device = make
        self.settings = settings
        connectors = {ch.device: ch.connectors for ch in settings.station.chargers}
        self.by_name: dict[str, Any] = {}
        self.endpoints: dict[str, list[str]] = {}
        for d in settings.devices:
            if d.protocol == "ocpp":  # made and swapped in by agent.ocpp.wiring
                continue
            extra: dict[str, Any] = {"connectors": connectors[d.name]} if d.name in connectors else {}
            if d.invert:
                extra["invert"] = True
            self.by_name[d.name] = make_device(
                d.kind, line_endpoint(d), d.unit_id, d.profile, timeout_s=d.timeout_s, **extra
            )
            self.endpoints.setdefault(d.endpoint, []).append(d.name)
        st = settings.station
        self.chargers: dict[str, Any] = {
            ch.id: self.by_name[ch.device] for ch in st.chargers if ch.device in self.by_name
        }
        self.inverter = self.by_name[st.battery.inverter] if st.battery else None

    def health(self) -> dict[str, Any]:
        return {name: dev.health for name, dev in self.by_name.items()}

    async def close(self) -> None:
        closed: set[int] = set()
        for dev in self.by_name.values():
            bus = getattr(dev, "bus", None)
            if bus is not None and id(bus) not in closed:
                closed.add(id(bus))
                await bus.close()


class DeviceStatus:
    """The devices as the read model shows them (agent/state/station_state.py
    `DeviceReadout`): each one's health (a frozen `Health`, made when asked), what an OCPP
    charger says of itself and its traffic log. Nothing here reads, writes or changes a
    device."""

    def __init__(self, devices: StationDevices) -> None:
        self._devices = devices

    def health(self) -> dict[str, Any]:
        return self._devices.health()

    def describe(self, name: str) -> dict[str, Any] | None:
        describe = getattr(self._devices.by_name.get(name), "describe", None)
        return describe() if describe is not None else None  # type: ignore[no-any-return]

    def ocpp_log(self, charge_point_id: str, limit: int) -> list[dict[str, Any]] | None:
        for dev in self._devices.by_name.values():
            cfg = getattr(dev, "cfg", None)
            traffic = getattr(dev, "traffic", None)
            if traffic is not None and getattr(cfg, "charge_point_id", None) == charge_point_id:
                return traffic.tail(limit)  # type: ignore[no-any-return]
        return None


def line_endpoint(d: DeviceSettings) -> str:
    """The endpoint URL the drivers open: an RTU line carries the entry's baudrate and
    parity (without them the drivers would open every line at their 19200 8N1 default,
    deaf to a 9600 baud bus). Options already in the URL are kept as written."""
    if not d.endpoint.startswith("rtu://") or "?" in d.endpoint:
        return d.endpoint
    return f"{d.endpoint}?baudrate={d.baudrate}&parity={d.parity}"


class Reader:
    def __init__(self, devices: StationDevices, clock: Clock, stats: CycleStats) -> None:
        self.devices = devices
        self.clock = clock
        self.stats = stats
        self.latest: dict[str, _Latest] = {name: _Latest() for name in devices.by_name}
        self._running: dict[str, asyncio.Task[None]] = {}
        # Grid meter hysteresis (_steady_grid): trusted once, lost since, valid again since.
        self._grid_trusted = False
        self._grid_stale = False
        self._grid_back_since: float | None = None

    async def read_all(self, deadline: float) -> None:
        """Start a read on every idle endpoint and wait for them until `deadline`."""
        for endpoint, names in self.devices.endpoints.items():
            task = self._running.get(endpoint)
            if task is None or task.done():
                self._running[endpoint] = asyncio.create_task(self._read_endpoint(names))
        pending = [t for t in self._running.values() if not t.done()]
        timeout = max(0.0, deadline - self.clock.monotonic())
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    def received(self, name: str, reading: Any, at: float) -> None:
        """A reading taken outside `read_all` (virtual devices, read in step with the
        cycle: agent/control/virtual.py), as if it had completed at monotonic `at`."""
        self.latest[name] = _Latest(reading, at)

    async def _read_endpoint(self, names: list[str]) -> None:
        for name in names:
            start = self.clock.monotonic()
            try:
                reading = await self.devices.by_name[name].read()
            except Exception as exc:  # DeviceError, or anything a broken device provokes
                log.debug("read %s failed: %s", name, exc)
                self.stats.record_read(name, None)
                continue
            end = self.clock.monotonic()
            self.latest[name] = _Latest(reading, end)
            self.stats.record_read(name, end - start)

    def fresh(self, name: str | None, t: float) -> Any:
        if name is None:
            return None
        latest = self.latest[name]
        return (
            latest.reading if t - latest.at <= self.devices.settings.control.stale_after_s else None
        )

    def _steady_grid(self, grid_kw: float | None, t: float) -> float | None:
        """The grid power the cycle may trust. Losing it is immediate (the safe budget
        applies at once); after a stale spell it is trusted again only once the meter has
        given valid power for `stale_after_s` without a gap, the time it takes to be
        declared stale: a meter answering garbage that now and then passes every check
        must not flip the degraded mode on and off. The first reading after start-up is
        trusted at once."""
        if grid_kw is None:
            self._grid_stale = self._grid_trusted  # not before the first valid reading
            self._grid_back_since = None
            return None
        if not self._grid_stale:
            self._grid_trusted = True
            return grid_kw
        if self._grid_back_since is None:
            self._grid_back_since = t
        if t - self._grid_back_since < self.devices.settings.control.stale_after_s:
            return None
        self._grid_stale = False
        self._grid_back_since = None
        return grid_kw

    def snapshot(self, t: float) -> Snapshot:
        st = self.devices.settings.station
        meter = self.fresh(st.grid_meter, t)
        grid = self._steady_grid(meter.power_kw if meter is not None else None, t)
        pv_inv = self.fresh(st.pv_inverter, t)
        pv = pv_inv.pv_kw if pv_inv is not None else None
        battery = None
        inverter_battery_kw = None
        if st.battery is not None:
            bms = self.fresh(st.battery.bms, t) if st.battery.bms else None
            inv = self.fresh(st.battery.inverter, t)
            inverter_battery_kw = inv.battery_kw if inv is not None else None
            if bms is not None and bms.soc_pct is not None:
                power = bms.power_kw if bms.power_kw is not None else inv.battery_kw if inv else 0.0
                battery = BatteryState(
                    soc=bms.soc_pct,
                    max_charge_kw=bms.max_charge_kw
                    if bms.max_charge_kw is not None
                    else st.battery.max_charge_kw,
                    max_discharge_kw=bms.max_discharge_kw
                    if bms.max_discharge_kw is not None
                    else st.battery.max_discharge_kw,
                    power_kw=power or 0.0,
                    soh_pct=bms.soh_pct,
                    temp_min_c=bms.temp_min_c,
                    temp_max_c=bms.temp_max_c,
                    cell_v_min=bms.cell_v_min,
                    cell_v_max=bms.cell_v_max,
                )
        chargers = []
        for ch in st.chargers:
            latest = self.latest[ch.device]
            reading = self.fresh(ch.device, t)
            source = reading if reading is not None else latest.reading
            conns = []
            for i in range(1, ch.connectors + 1):
                c = source.connectors[i - 1] if source is not None else None
                conns.append(
                    ConnectorState(
                        charger_id=ch.id,
                        idx=i,
                        state=(c.state or "?") if c else "?",
                        power_kw=(c.power_kw or 0.0) if c else 0.0,
                        energy_kwh=(c.session_energy_kwh or 0.0) if c else 0.0,
                        ev_max_kw=c.ev_max_kw if c else None,
                        limit_kw=c.limit_kw if c else None,
                        soc_pct=getattr(c, "soc_pct", None) if c else None,
                        vehicle_id=getattr(c, "vehicle_id", None) if c else None,
                        transaction_id=getattr(c, "transaction_id", None) if c else None,
                        # only a fresh reading's: held values would teach an old draw
                        currents_a=getattr(c, "currents_a", None) if c and reading else None,
                        power_ts=getattr(c, "power_ts", None) if c else None,
                        charge_phases=getattr(c, "charge_phases", None) if c else None,
                        measured=getattr(c, "measured", True) if c else True,
                        cap_kw=getattr(c, "cap_kw", None) if c else None,
                    )
                )
            chargers.append(ChargerState(ch.id, reading is not None, tuple(conns),
                                         getattr(source, "limit_in_amps", False),
                                         getattr(source, "phase_switch_pause_s", None),
                                         getattr(source, "cap_kw", None)))
        circuit_meters = []
        for c in st.circuits:
            if c.meter is None:
                continue
            m = self.fresh(c.meter, t)
            circuit_meters.append(CircuitMeterState(
                c.id, m.currents_a if m is not None else None,
                m.power_kw if m is not None else None,
                t - self.latest[c.meter].at if m is not None else 0.0))  # fmt: skip
        return Snapshot(
            t,
            self.clock.now(),
            grid,
            pv,
            battery,
            tuple(chargers),
            grid_import_kwh=meter.energy_import_kwh if meter is not None else None,
            grid_export_kwh=meter.energy_export_kwh if meter is not None else None,
            grid_age_s=t - self.latest[st.grid_meter].at if meter is not None else 0.0,
            inverter_battery_kw=inverter_battery_kw,
            circuit_meters=tuple(circuit_meters),
        )
