"""The simulator's electrical tree: the breaker's trip curve, per-phase currents of 1-phase
EVs through a charger's rotation, and a sub-board meter read over Modbus by the drivers."""

from __future__ import annotations

import asyncio
import math

import pytest
from hardware_sim import ManualClock, Simulator
from hardware_sim.fuses import Breaker, trip_time_s
from hardware_sim.station import StationError, parse_station

from drivers import make_device

STATION = {
    "stationId": "T",
    "gridCapacity": 100.0,
    "circuits": [{"id": "main", "maxCurrent": 63.0},
                 {"id": "sub", "parent": "main", "maxCurrent": 32.0, "meter": True,
                  "baseLoad": 2.3}],
    "chargers": [
        {"id": "CP1", "maxPower": 11.0, "kind": "ac", "circuit": "sub"},
        {"id": "CP2", "maxPower": 11.0, "kind": "ac", "circuit": "sub", "phaseRotation": "L2L3L1"},
        {"id": "CP3", "maxPower": 22.0, "kind": "ac", "circuit": "main"},
    ],
}  # fmt: skip


def test_trip_curve_follows_the_iec_60898_conventional_points():
    assert math.isinf(trip_time_s(1.0)) and math.isinf(trip_time_s(1.13))
    assert trip_time_s(1.45) == pytest.approx(60.0)
    assert trip_time_s(2.55) == pytest.approx(1.0)
    assert trip_time_s(5.0) == pytest.approx(0.1) and trip_time_s(20.0) == pytest.approx(0.1)
    assert 60.0 < trip_time_s(1.3) < 3600.0  # thermal region, monotonic
    b = Breaker(32.0)
    t = 0.0
    while not b.step(t, (32.0 * 1.45, 0.0, 0.0), 0.5):
        t += 0.5
    assert b.tripped_at == pytest.approx(59.5, abs=0.6)
    held = Breaker(32.0)
    assert not any(held.step(i * 1.0, (32.0 * 1.12, 1.0, 1.0), 1.0) for i in range(7200))
    assert held.over_s == pytest.approx(7200.0)  # over the rating, yet never trips


def test_bad_tree_is_refused_naming_the_field():
    bad = {**STATION, "chargers": [{"id": "CP1", "maxPower": 11.0, "circuit": "nowhere"}]}
    with pytest.raises(StationError, match=r"chargers\[0\]\.circuit: no circuit 'nowhere'"):
        parse_station(bad)
    bad = {**STATION, "chargers": [{"id": "CP1", "maxPower": 11.0, "phaseRotation": "L1L1L2"}]}
    with pytest.raises(StationError, match=r"chargers\[0\]\.phaseRotation"):
        parse_station(bad)


def test_sub_board_meter_serves_one_phase_evs_per_phase_and_an_overload_trips():
    asyncio.run(_sub_board())


async def _sub_board():
    async with Simulator(STATION, clock=ManualClock(), rtu_meter=False) as sim:
        for cid in ("CP1", "CP2"):
            sim.plug(cid, 1, max_kw=7.36, capacity_kwh=60.0, soc=0.2, energy_needed_kwh=40.0,
                     phases=1)
        sim.plug("CP3", 1, max_kw=22.0, capacity_kwh=60.0, soc=0.2, energy_needed_kwh=40.0)
        for cid in ("CP1", "CP2", "CP3"):  # limits the EVs' maxima: nothing trips
            sim.model.chargers[cid].write_limit(1, 7.36 if cid != "CP3" else 22.0, sim.model.t)
        sim.advance(5.0)
        ep = sim.endpoints["circuitMeters"]["sub"]
        meter = make_device("meter", f"tcp://{ep['tcp']}", ep["unit"], ep["profile"],
                            timeout_s=1.0)
        try:
            reading = await meter.read()
        finally:
            await meter.bus.close()
        # CP1's EV on L1, CP2's (rotated) on L2: 32 A each, plus the base 40/30/30 %
        base = [2.3 * s * 1000 / 230 for s in (0.4, 0.3, 0.3)]
        assert reading.currents_a == pytest.approx((32.0 + base[0], 32.0 + base[1], base[2]),
                                                   abs=0.01)
        assert reading.power_kw == pytest.approx(7.36 * 2 + 2.3, abs=0.01)
        state = sim.state()
        # the main board carries the sub-board and CP3's 3-phase EV (22 kW: 31.9 A a phase)
        main = state["circuits"]["main"]["current"]
        assert main[0] == pytest.approx(32.0 + base[0] + 22.0 / 0.69, abs=0.01)
        assert state["trips"] == []
        # CP1's 1-phase EV at 11 kW (48 A on L1) and a 3-phase one on CP2: ~2 x on L1 trips it
        sim.unplug("CP2", 1)
        sim.plug("CP2", 1, max_kw=22.0, capacity_kwh=60.0, soc=0.2, energy_needed_kwh=40.0,
                 phases=3)
        sim.model.chargers["CP2"].write_limit(1, 11.0, sim.model.t)
        sim.model.chargers["CP1"].write_limit(1, 11.0, sim.model.t)
        sim.unplug("CP1", 1)
        sim.plug("CP1", 1, max_kw=14.72, capacity_kwh=60.0, soc=0.2, energy_needed_kwh=40.0,
                 phases=1)
        for _ in range(200):
            sim.advance(0.5)
            if sim.state()["trips"]:
                break
        state = sim.state()
        assert [t["circuit"] for t in state["trips"]] == ["sub"], state["circuits"]
        assert state["circuits"]["sub"]["tripped"]
        assert all(c["power"] == 0.0 for c in state["connectors"] if c["chargerId"] in ("CP1", "CP2"))


@pytest.mark.parametrize("profile", ["eastron-sdm630", "sunspec-meter", "carlo-gavazzi-em24"])
def test_circuit_meter_currents_from_real_meter_maps(profile):
    """The per-phase currents a circuit meter needs, through the vendor and SunSpec maps."""
    asyncio.run(_real_map(profile))


async def _real_map(profile):
    async with Simulator(STATION, clock=ManualClock(), rtu_meter=False,
                         profiles={"meter:sub": profile}) as sim:
        sim.plug("CP1", 1, max_kw=7.36, capacity_kwh=60.0, soc=0.2, energy_needed_kwh=40.0,
                 phases=1)
        sim.model.chargers["CP1"].write_limit(1, 7.36, sim.model.t)
        sim.advance(5.0)
        ep = sim.endpoints["circuitMeters"]["sub"]
        assert ep["profile"] == profile
        meter = make_device("meter", f"tcp://{ep['tcp']}", ep["unit"], profile, timeout_s=1.0)
        try:
            reading = await meter.read()
        finally:
            await meter.bus.close()
        truth = sim.state()["circuits"]["sub"]["current"]
        assert truth[0] == pytest.approx(32.0 + 4.0, abs=0.01)
        assert reading.currents_a == pytest.approx(tuple(truth), abs=0.05)
