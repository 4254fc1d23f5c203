"""The agent's settings for a running hardware simulator: one station, one way to describe it.

Shared by every test that runs the agent against `hardware_sim` (in process in tests/agent,
as a `sems run` child in tests/faults and tests/integration), so a change of the settings
schema is made here once rather than in each suite's copy.

    cfg = agent_config(sim.endpoints, tmp_path / "agent.db", mqtt_port=broker.port)
    write_config(cfg, tmp_path / "agent.toml")        # for `sems run --config`
    settings = agent_settings(sim.endpoints, tmp_path / "agent.db", period_s=0.2)
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.config.settings import AgentSettings

STATION: dict[str, Any] = {
    "stationId": "SIM1",
    "gridCapacity": 60.0,
    "chargers": [
        {"id": "CP1", "maxPower": 50.0, "connectors": 2, "kind": "dc"},
        {"id": "CP2", "maxPower": 22.0, "connectors": 1, "kind": "ac"},
    ],
}
BATTERY_STATION: dict[str, Any] = {
    **STATION,
    "battery": {"capacity": 60.0, "maxChargePower": 30.0, "maxDischargePower": 30.0,
                "socStart": 0.7},
}  # fmt: skip
CAPACITY_KW = 60.0
# At least the highest base load any simulator test sets (30 kW): the degraded budget and the
# fallback limits are then tested as the pessimistic bounds they claim to be.
PESSIMISTIC_BASE_KW = 30.0
PERIOD_S = 0.1


def ev(sim: Any, charger: str, idx: int, kw: float) -> None:
    """Plug an EV that can draw `kw` and wants 60 kWh into the simulator's connector."""
    sim.plug(charger, idx, max_kw=kw, capacity_kwh=80.0, soc=0.2, energy_needed_kwh=60.0)


async def cycles(loop: Any, n: int) -> None:
    """`n` control cycles of an in-process ControlLoop, one period apart."""
    for _ in range(n):
        await loop.cycle()
        await asyncio.sleep(loop.s.control.period_s)


def toml_value(value: Any) -> str:
    """One TOML value. (tomli_w is not a dependency; JSON strings are valid TOML strings.)"""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def to_toml(data: Mapping[str, Any], prefix: str = "") -> str:
    """Tables and arrays of tables, as deep as the agent's settings go."""
    out: list[str] = []
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict | list) or
               (isinstance(v, list) and not (v and isinstance(v[0], dict)))}  # fmt: skip
    for k, v in scalars.items():
        out.append(f"{k} = {toml_value(v)}")
    for k, v in data.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.append(f"\n[{name}]")
            out.append(to_toml(v, f"{name}."))
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            for item in v:
                out.append(f"\n[[{name}]]")
                out.append(to_toml(item, f"{name}."))
    return "\n".join(line for line in out if line != "")


def write_config(config: Mapping[str, Any], path: Path) -> Path:
    """The settings as the agent's TOML file."""
    path.write_text(to_toml(config) + "\n")
    return path


def agent_config(
    endpoints: Mapping[str, Any],
    db_path: Path,
    *,
    station_id: str = "SIM1",
    rtu_meter: bool = False,
    battery: bool = False,
    control: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    mqtt_port: int | None = None,
) -> dict[str, Any]:
    """The agent's settings for a running simulator (its chargers, V2G ones too), as a dict.
    `rtu_meter`: the grid meter (and BMS) over the simulator's RS-485 pseudo-terminal;
    `battery`: BATTERY_STATION's BMS and inverter; `mqtt_port`: an [mqtt] section for a
    loopback broker (short keepalive and backoff); `extra`: keys merged into each section.
    The local API always answers on a socket beside the database."""
    def device(name: str, kind: str) -> dict[str, Any]:
        ep = endpoints[name] if name in endpoints else endpoints["chargers"][name]
        entry = {"name": name, "kind": kind, "profile": ep["profile"], "unit_id": ep["unit"]}
        if rtu_meter and name in ("meter", "bms"):
            entry.update(endpoint=f"rtu://{ep['rtu']}", baudrate=115200)
        else:
            entry["endpoint"] = f"tcp://{ep['tcp']}"
        return entry

    devices = [device("meter", "meter")]
    chargers = []
    for cid, ep in endpoints["chargers"].items():
        devices.append(device(cid, "charger"))
        chargers.append({"id": cid, "device": cid, "max_power_kw": ep["maxPower"],
                         "connectors": ep["connectors"], "v2g": ep["v2g"]})  # fmt: skip
    station: dict[str, Any] = {
        "id": station_id, "grid_capacity_kw": CAPACITY_KW, "grid_meter": "meter",
        "pessimistic_base_load_kw": PESSIMISTIC_BASE_KW, "chargers": chargers,
    }  # fmt: skip
    if battery:
        devices += [device("bms", "battery"), device("inverter", "inverter")]
        station["battery"] = {"inverter": "inverter", "bms": "bms", "max_charge_kw": 30.0,
                              "max_discharge_kw": 30.0, "min_soc": 10.0, "capacity_kwh": 60.0}  # fmt: skip
    ctl = {"period_s": PERIOD_S, "stale_after_s": 0.5, "comm_timeout_s": 3, "cap_after_s": 2.0}
    ctl.update(control or {})
    cfg: dict[str, Any] = {
        "station": station, "devices": devices, "control": ctl,
        "planner": {"enabled": False}, "storage": {"db_path": str(db_path)},
        "api": {"socket_path": str(db_path.parent / "api.sock")},
    }  # fmt: skip
    if mqtt_port is not None:
        cfg["mqtt"] = {
            "host": "127.0.0.1", "port": mqtt_port, "keepalive_s": 3, "backoff_initial_s": 0.1,
            "backoff_max_s": 0.5, "telemetry_interval_s": 1.0, "health_interval_s": 3.0,
        }  # fmt: skip
    for section, values in (extra or {}).items():
        cfg[section] = {**cfg.get(section, {}), **values}
    return cfg


def agent_settings(
    endpoints: Mapping[str, Any], db_path: Path, *, battery: bool = False, **control: Any
) -> AgentSettings:
    """`agent_config` as validated settings, for a control loop built in the test's process;
    `control`: [control] keys."""
    return AgentSettings(**agent_config(endpoints, db_path, battery=battery, control=control))


# --- the shipped example (config/agent.example.toml) against `sems-sim`, as processes ------
REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "config" / "agent.example.toml"
SEMS = [sys.executable, "-m", "agent.cli"]
SEMS_SIM = [sys.executable, "-c", "import sys; from hardware_sim.cli import main; sys.exit(main())"]
# The example's device endpoints, in the simulator's device order.
EXAMPLE_PORTS = {"meter": "5020", "bms": "5021", "inverter": "5022", "CP1": "5023", "CP2": "5024"}


@contextmanager
def example_sim() -> Iterator[dict[str, Any]]:
    """`sems-sim` serving the example's station on free loopback ports: its ready line."""
    proc = subprocess.Popen([*SEMS_SIM, "--station", str(EXAMPLE), "--no-rtu"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            cwd=REPO)  # fmt: skip
    try:
        assert proc.stdout is not None
        yield json.loads(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.wait(30)


def example_config(endpoints: Mapping[str, Any], path: Path,
                   **moved: str) -> Path:  # fmt: skip
    """The example with its endpoints moved to the running simulator's ports; `moved`:
    HOST:PORT for a device (meter, bms, inverter, CP1, CP2) to point elsewhere."""
    text = EXAMPLE.read_text()
    for name, port in EXAMPLE_PORTS.items():
        ep = endpoints[name] if name in endpoints else endpoints["chargers"][name]
        text = text.replace(f"127.0.0.1:{port}", moved.get(name, ep["tcp"]))
    path.write_text(text)
    return path


def example_env(tmp: Path, **extra: str) -> dict[str, str]:
    """Environment of the example on a laptop (as docs/quickstart.md sets it): store and API
    socket in `tmp`, no cloud broker; plus `extra` variables."""
    return dict(os.environ, SEMS_STORAGE__DB_PATH=str(tmp / "agent.db"),
                SEMS_API__SOCKET_PATH=str(tmp / "api.sock"), SEMS_MQTT__ENABLED="false",
                SEMS_API_SOCKET=str(tmp / "api.sock"),
                NUMBA_CACHE_DIR=os.environ.get("NUMBA_CACHE_DIR", str(REPO / ".numba-cache")),
                **extra)  # fmt: skip
