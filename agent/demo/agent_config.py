"""The agent's settings for a running simulator, generated from its ready line.

Every emulated device becomes a [[devices]] entry over TCP, except the grid meter, which
is read over the simulator's RS-485 line (a pseudo-terminal) as on a real station. The
result is checked with the agent's own `load()` before the agent is started, so a mistake
here shows up as the agent's config messages, not as a daemon that will not start.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomli_w

if TYPE_CHECKING:
    from agent.config.settings import AgentSettings

COMM_TIMEOUT_WALL_S = 10.0  # the chargers' communication timeout, in real seconds
REFRESH_WALL_S = 4.0  # limits are rewritten this often (real seconds)
# An increase under the deadband is written once wanted this long, in the station's time:
# at 360x the default 30 s would be 3 simulated hours, a whole session (S05's residue on the
# sub-board day: docs/testing.md).
DEADBAND_HOLD_SIM_S = 30.0


def build_agent_config(
    ready: dict[str, Any],
    station: dict[str, Any],
    workdir: Path,
    *,
    time_factor: float,
    broker_port: int | None,
) -> dict[str, Any]:
    """`ready`: the simulator's ready line; `station`: the scenario's station object
    (battery size and SoC limits, which the ready line does not carry)."""
    endpoints = ready["endpoints"]
    meter = endpoints["meter"]
    meter_endpoint = f"rtu://{meter['rtu']}" if meter.get("rtu") else f"tcp://{meter['tcp']}"
    devices = [_device("meter", "meter", meter, meter_endpoint)]
    for name, kind in (("bms", "battery"), ("inverter", "inverter")):
        if name in endpoints:
            devices.append(_device(name, kind, endpoints[name]))
    places = {c["id"]: _place(c) for c in station.get("chargers") or []}
    chargers = []
    for cid, ep in endpoints["chargers"].items():
        devices.append(_device(cid, "charger", ep))
        chargers.append({"id": cid, "device": cid, "max_power_kw": float(ep["maxPower"]),
                         "connectors": int(ep["connectors"]), **places.get(cid, {})})  # fmt: skip
    meters = endpoints.get("circuitMeters") or {}
    circuits = [_circuit(c, f"meter-{c['id']}" if c["id"] in meters else None)
                for c in station.get("circuits") or []]
    devices += [_device(f"meter-{cid}", "meter", ep) for cid, ep in meters.items()]

    capacity = float(station["gridCapacity"])
    cfg_station: dict[str, Any] = {
        "id": ready["stationId"],
        "grid_capacity_kw": capacity,
        "grid_meter": "meter",
        # Sizes the fallback limits: a third of the connection kept for the site's own load.
        "pessimistic_base_load_kw": round(capacity / 3, 1),
        "chargers": chargers,
    }
    if circuits:
        cfg_station["circuits"] = circuits
        if station.get("voltage") is not None:
            cfg_station["voltage_v"] = float(station["voltage"])
    if "inverter" in endpoints:
        cfg_station["pv_inverter"] = "inverter"
    battery = station.get("battery")
    if battery and "inverter" in endpoints:
        b: dict[str, Any] = {
            "inverter": "inverter",
            "min_soc": _percent(battery.get("minSoc", 0.1)),
            "max_charge_kw": float(battery["maxChargePower"]),
            "max_discharge_kw": float(battery["maxDischargePower"]),
        }
        if "bms" in endpoints:
            b["bms"] = "bms"
        if "capacity" in battery:
            b["capacity_kwh"] = float(battery["capacity"])
        cfg_station["battery"] = b

    # The simulator counts the chargers' communication timeout in simulated seconds, the
    # agent refreshes limits after refresh_fraction x comm_timeout_s real ones: scale the
    # timeout to stay 10 real seconds and keep the refresh at 4 real seconds, else an idle
    # charger times out to its fallback limit between two refreshes.
    comm_timeout = max(2, math.ceil(COMM_TIMEOUT_WALL_S * time_factor))
    config: dict[str, Any] = {
        "log_level": "WARNING",
        "station": cfg_station,
        "devices": devices,
        "control": {
            "period_s": 0.25,  # real time: the demo accelerates the station, not the agent
            "comm_timeout_s": comm_timeout,
            "refresh_fraction": min(0.5, REFRESH_WALL_S / comm_timeout),
            "deadband_hold_s": DEADBAND_HOLD_SIM_S / time_factor,
        },
        # The planner plans in wall-clock hours; at 60x its plan would be stale within
        # seconds. The demo shows the real-time allocator, which is the safety authority.
        "planner": {"enabled": False},
        "storage": {"db_path": str(workdir / "agent.db")},
    }
    if broker_port is not None:
        config["mqtt"] = {"enabled": True, "host": "127.0.0.1", "port": broker_port}
    config["api"] = {"socket_path": str(workdir / "api.sock")}
    return _known_sections(config)


def _device(name: str, kind: str, ep: dict[str, Any], endpoint: str | None = None) -> dict[str, Any]:
    """A [[devices]] entry for one of the simulator's endpoints (TCP unless given)."""
    return {"name": name, "kind": kind, "profile": ep["profile"],
            "endpoint": endpoint or f"tcp://{ep['tcp']}", "unit_id": ep["unit"]}


# The scenario's electrical tree (docs/allocation.md) in the settings' names: without it the
# agent would share in kW only and a sub-board's fuse would carry whatever that allows.
_CIRCUIT_KEYS = (("parent", "parent"), ("maxCurrent", "max_current_a"),
                 ("maxPower", "max_power_kw"))
_PLACE_KEYS = (("circuit", "circuit"), ("phases", "phases"),
               ("phaseRotation", "phase_rotation"), ("maxCurrent", "max_current_a"))


def _circuit(c: dict[str, Any], meter: str | None) -> dict[str, Any]:
    """A [[station.circuits]] entry: its fuse, and its meter where the simulator serves one."""
    entry = {"id": c["id"], **{name: c[key] for key, name in _CIRCUIT_KEYS
                              if c.get(key) is not None}}
    return entry | ({"meter": meter} if meter else {})


def _place(c: dict[str, Any]) -> dict[str, Any]:
    """A charger's place in the tree: circuit, conductors, rotation, rating in A."""
    return {name: c[key] for key, name in _PLACE_KEYS if c.get(key) is not None}


def _known_sections(config: dict[str, Any]) -> dict[str, Any]:
    """Leave out the sections this agent's settings do not define ([api] and [mqtt] came
    after [station]): the settings forbid unknown keys."""
    from agent.config.settings import AgentSettings

    return {k: v for k, v in config.items() if k in AgentSettings.model_fields}


def _percent(soc: float) -> float:
    """Scenario SoC is a fraction 0..1; the agent's settings use percent."""
    return float(soc) * 100.0 if soc <= 1 else float(soc)


def write_agent_config(config: dict[str, Any], path: Path) -> tuple[Path, AgentSettings]:
    """Write the TOML and check it with the agent's loader; ConfigError lists problems."""
    from agent.config.settings import load

    path.write_text(tomli_w.dumps(config), encoding="utf-8")
    return path, load(path)
