"""Modbus transport and capability drivers (meter, battery, inverter, charger) from register-map profiles.

The names below load their module on first use (PEP 562), so a caller that needs only the
profile or endpoint parsers (`sems config check`) does not import pymodbus with them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "DeviceError": "device", "ModbusDevice": "device", "NotSupported": "device",
    "Battery": "devices", "BatteryReading": "devices", "Charger": "devices",
    "ChargerReading": "devices", "ConnectorReading": "devices", "Inverter": "devices",
    "InverterReading": "devices", "Meter": "devices", "MeterReading": "devices",
    "make_device": "devices",
    "Endpoint": "endpoint", "EndpointError": "endpoint", "parse_endpoint": "endpoint",
    "ERROR_KINDS": "health", "Health": "health",
    "Point": "profile", "Profile": "profile", "ProfileError": "profile",
    "load_profile": "profile",
    "Bus": "transport", "TransportError": "transport", "open_endpoint": "transport",
}  # fmt: skip

__all__ = [
    "ERROR_KINDS", "Battery", "BatteryReading", "Bus", "Charger", "ChargerReading",
    "ConnectorReading", "DeviceError", "Endpoint", "EndpointError", "Health", "Inverter",
    "InverterReading", "Meter", "MeterReading", "ModbusDevice", "NotSupported", "Point",
    "Profile", "ProfileError", "TransportError", "load_profile", "make_device",
    "open_endpoint", "parse_endpoint",
]  # the same names as _WHERE's keys (a literal, so linters see what is exported)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'drivers' has no attribute {name!r}")
    return getattr(importlib.import_module(f"drivers.{module}"), name)


if TYPE_CHECKING:
    from drivers.device import DeviceError, ModbusDevice, NotSupported
    from drivers.devices import (
        Battery,
        BatteryReading,
        Charger,
        ChargerReading,
        ConnectorReading,
        Inverter,
        InverterReading,
        Meter,
        MeterReading,
        make_device,
    )
    from drivers.endpoint import Endpoint, EndpointError, parse_endpoint
    from drivers.health import ERROR_KINDS, Health
    from drivers.profile import Point, Profile, ProfileError, load_profile
    from drivers.transport import Bus, TransportError, open_endpoint
