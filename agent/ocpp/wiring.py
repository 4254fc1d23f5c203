"""Into the station: `protocol = "ocpp"` devices become OcppChargers in the control loop's
device set, served by one CentralSystem (the daemon starts and closes it)."""

from __future__ import annotations

from typing import Any

from agent.config.ocpp import OcppChargerConfig
from agent.ocpp.charger import OcppCharger
from agent.ocpp.server import CentralSystem


def attach_ocpp(devices: Any, settings: Any) -> CentralSystem | None:
    """Add an OcppCharger for every OCPP device to `devices` (a StationDevices, before the
    control loop is built on it); the central system that serves them, or None."""
    by_device = {ch.device: ch for ch in settings.station.chargers}
    chargers: dict[str, OcppCharger] = {}
    for d in settings.devices:
        if d.protocol != "ocpp" or d.ocpp is None or d.name not in by_device:
            continue
        ch = by_device[d.name]
        cfg = OcppChargerConfig(**d.ocpp.model_dump(), connectors=ch.connectors,
                                max_power_kw=ch.max_power_kw)
        charger = OcppCharger(d.name, cfg, settings.ocpp)
        chargers[cfg.charge_point_id] = charger
        swap_in(devices, d.name, ch.id, charger)
    return CentralSystem(settings.ocpp, chargers) if chargers else None


def swap_in(devices: Any, name: str, charger_id: str, charger: OcppCharger) -> None:
    """Put `charger` where the control loop looks for device `name` / charger `charger_id`,
    on an endpoint of its own (its reads never wait for another device's)."""
    for names in devices.endpoints.values():
        if name in names:
            names.remove(name)
    devices.by_name[name] = charger
    devices.chargers[charger_id] = charger
    devices.endpoints[f"ocpp://{charger.cfg.charge_point_id}"] = [name]
