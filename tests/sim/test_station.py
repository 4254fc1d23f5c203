"""Station descriptions the simulator accepts, and the real (scaled) clock."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hardware_sim import Simulator, StationError, load_station_file, parse_station

from tests.shared_files import REFERENCE_DAY

from .helpers import STATION, run

ROOT = Path(__file__).resolve().parents[2]


def test_agent_example_config_is_a_station() -> None:
    spec = load_station_file(ROOT / "config" / "agent.example.toml")
    assert spec.grid_capacity_kw > 0 and spec.chargers
    assert all(c.max_kw > 0 for c in spec.chargers)
    if spec.battery is not None:  # the agent writes min_soc in percent
        assert 0 <= spec.battery.min_soc < 1


def test_scenario_day_and_plain_station() -> None:
    spec = load_station_file(str(REFERENCE_DAY))
    assert spec.station_id == "REF-SUMMER" and len(spec.evs) == 45
    assert len(spec.pv_series_kw) == 96 and spec.start is not None
    small = load_station_file(ROOT / "hardware-sim" / "scenarios" / "small-station.json")
    assert small.station_id == "SIM-SMALL" and small.battery is not None
    plain = parse_station(STATION)
    assert plain.battery is not None and plain.battery.capacity_kwh == 200.0
    assert [c.kind for c in plain.chargers] == ["dc", "ac"]


@pytest.mark.parametrize("data, field", [
    ({}, "gridCapacity"),
    ({"gridCapacity": 10, "chargers": {}}, "chargers"),
    ({"gridCapacity": 10, "chargers": [{"id": "A", "maxPower": 1}, {"id": "A", "maxPower": 1}]},
     "chargers[1].id"),
    ({"gridCapacity": 10, "chargers": [{"id": "A", "maxPower": 1, "connectors": 0}]},
     "chargers[0].connectors"),
    ({"gridCapacity": 10, "chargers": [{"id": "A", "maxPower": 1, "kind": "hvdc"}]},
     "chargers[0].kind"),
    ({"gridCapacity": 10, "battery": {"capacity": 1, "maxChargePower": 1,
                                      "maxDischargePower": -1}}, "battery.maxDischargePower"),
    ({"station": {"gridCapacity": 10}, "series": [{"start": "noon"}]}, "series[0].start"),
])
def test_bad_descriptions_name_the_field(data: dict, field: str) -> None:
    with pytest.raises(StationError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_station(data)


def test_real_clock_runs_at_the_time_factor() -> None:
    async def body() -> None:
        async with Simulator(STATION, time_factor=50.0, rtu_meter=False) as sim:
            with pytest.raises(RuntimeError):
                sim.advance(1.0)
            await asyncio.sleep(0.4)
            t = sim.state()["t"]
            assert 10.0 < t < 30.0  # about 0.4 s x 50
            assert sim.grid_history and sim.grid_history[-1][0] <= t
    run(body)


def test_set_changes_only_what_is_given() -> None:
    from hardware_sim import ManualClock

    async def body() -> None:
        async with Simulator(STATION, clock=ManualClock(), rtu_meter=False) as sim:
            curve = sim.state()["pvPower"]
            sim.set(pv_kw=5.0)
            sim.set(base_load_kw=7.0)
            assert sim.state()["pvPower"] == 5.0 and sim.state()["baseLoad"] == 7.0
            sim.set(pv_kw=None)
            assert sim.state()["pvPower"] == curve and sim.state()["baseLoad"] == 7.0
            with pytest.raises(ValueError, match="base_load_kw"):
                sim.set(base_load_kw="lots")
    run(body)
