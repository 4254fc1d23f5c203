"""Modbus emulators of the station devices with physics, scenarios and fault injection (`sems-sim`)."""

from .simulator import ManualClock, Simulator
from .station import StationError, StationSpec, load_station_file, parse_station

__all__ = ["ManualClock", "Simulator", "StationError", "StationSpec", "load_station_file",
           "parse_station"]
