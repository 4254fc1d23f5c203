"""Modbus emulators of the station devices with physics, scenarios and fault injection (`sems-sim`)."""
