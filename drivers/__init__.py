"""Modbus transport and capability drivers (meter, battery, inverter, charger) from register-map profiles."""

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

__all__ = [
    "ERROR_KINDS", "Battery", "BatteryReading", "Bus", "Charger", "ChargerReading",
    "ConnectorReading", "DeviceError", "Endpoint", "EndpointError", "Health", "Inverter",
    "InverterReading", "Meter", "MeterReading", "ModbusDevice", "NotSupported", "Point",
    "Profile", "ProfileError", "TransportError", "load_profile", "make_device",
    "open_endpoint", "parse_endpoint",
]
