"""Modbus transport and capability drivers (meter, battery, inverter, charger) from register-map profiles."""
