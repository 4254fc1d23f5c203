"""The agent against the hardware simulator over real loopback Modbus sockets."""

from __future__ import annotations

from typing import Any

from agent.settings import AgentSettings

STATION = {
    "stationId": "SIM1",
    "gridCapacity": 60.0,
    "chargers": [
        {"id": "CP1", "maxPower": 50.0, "connectors": 2, "kind": "dc"},
        {"id": "CP2", "maxPower": 22.0, "connectors": 1, "kind": "ac"},
    ],
}


def agent_settings(
    endpoints: dict[str, Any], db_path, *, battery: dict | None = None, planner: dict | None = None,
    **control: Any,
) -> AgentSettings:
    """Agent settings for a running simulator: one [[devices]] entry per emulated device.
    `battery`: [station.battery] keys, for a simulator station with a battery."""
    devices = [
        {"name": "meter", "kind": "meter", "profile": endpoints["meter"]["profile"],
         "endpoint": f"tcp://{endpoints['meter']['tcp']}", "unit_id": endpoints["meter"]["unit"]},
    ]  # fmt: skip
    chargers = []
    for cid, ep in endpoints["chargers"].items():
        devices.append({"name": cid, "kind": "charger", "profile": ep["profile"],
                        "endpoint": f"tcp://{ep['tcp']}", "unit_id": ep["unit"]})  # fmt: skip
        chargers.append({"id": cid, "device": cid, "max_power_kw": ep["maxPower"],
                         "connectors": ep["connectors"]})  # fmt: skip
    station_battery = None
    if battery is not None:
        for name in ("bms", "inverter"):
            ep = endpoints[name]
            devices.append({"name": name, "kind": "battery" if name == "bms" else "inverter",
                            "profile": ep["profile"], "endpoint": f"tcp://{ep['tcp']}",
                            "unit_id": ep["unit"]})  # fmt: skip
        station_battery = {"inverter": "inverter", "bms": "bms", **battery}
    ctl = {"period_s": 0.1, "stale_after_s": 0.5, "comm_timeout_s": 3, "cap_after_s": 2.0}
    ctl.update(control)
    return AgentSettings(
        station={
            "id": "SIM1",
            "grid_capacity_kw": 60.0,
            "grid_meter": "meter",
            "pessimistic_base_load_kw": 15.0,
            "chargers": chargers,
            "battery": station_battery,
        },  # fmt: skip
        devices=devices,
        control=ctl,
        planner=planner or {"enabled": False},
        storage={"db_path": str(db_path)},
    )
