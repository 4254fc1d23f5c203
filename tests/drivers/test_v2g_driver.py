"""Charger.set_limit and V2G: negative limits are written only where the profile says the
point accepts them (`bidirectional = true` or a power_limit `min` below 0), against the
simulator's real Modbus TCP servers (ManualClock: simulated time moves only when told)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import hardware_sim
import pytest

import drivers

STATION = {
    "stationId": "v2g-drv", "gridCapacity": 100,
    "chargers": [{"id": "bidi", "maxPower": 50, "kind": "dc", "v2g": True},
                 {"id": "uni", "maxPower": 50, "kind": "dc"}],
}


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 30))


def charger(sim, cid: str) -> drivers.Charger:  # type: ignore[no-untyped-def]
    ep = sim.endpoints["chargers"][cid]
    dev = drivers.make_device("charger", f"tcp://{ep['tcp']}", ep["unit"], ep["profile"],
                              timeout_s=0.5, connectors=ep["connectors"])
    assert isinstance(dev, drivers.Charger)
    return dev


def test_bidirectional_profile_writes_negative_limits_and_reads_discharge() -> None:
    async def main() -> None:
        async with hardware_sim.Simulator(STATION, clock=hardware_sim.ManualClock(),
                                          rtu_meter=False) as sim:
            sim.set(base_load_kw=30.0, pv_kw=0.0)
            sim.plug("bidi", 1, max_kw=50.0, capacity_kwh=60.0, soc=0.6,
                     energy_needed_kwh=5.0, v2g=True)
            assert sim.endpoints["chargers"]["bidi"]["profile"] == "sim-charger-v2g"
            dev = charger(sim, "bidi")
            assert dev.bidirectional
            await dev.set_limit(1, -12.5)
            sim.advance(2.0)
            c = (await dev.read()).connectors[0]
            assert c.limit_kw == pytest.approx(-12.5)
            assert c.power_kw == pytest.approx(-12.5)
            assert c.state == "C"
            assert c.soc_pct == pytest.approx(60.0, abs=0.2)
            assert sim.state()["gridImport"] == pytest.approx(30.0 - 12.5)
            assert dev.health.errors["invalid"] == 0
            await dev.heartbeat()
            await dev.bus.close()
    run(main())


def test_unidirectional_profile_refuses_negative_limits_before_writing() -> None:
    async def main() -> None:
        async with hardware_sim.Simulator(STATION, clock=hardware_sim.ManualClock(),
                                          rtu_meter=False) as sim:
            dev = charger(sim, "uni")
            assert not dev.bidirectional
            await dev.set_limit(1, 7.0)
            with pytest.raises(ValueError, match=">= 0"):
                await dev.set_limit(1, -5.0)
            with pytest.raises(ValueError, match=">= 0"):
                await dev.set_limit(1, float("nan"))
            assert sim.model.chargers["uni"].connector(1).commanded_kw == pytest.approx(7.0)
            await dev.bus.close()
    run(main())


def test_min_below_zero_alone_makes_a_profile_bidirectional(tmp_path: Path) -> None:
    limit = 'type = "uint32"\nper_connector = true\nunit = "W"\naccess = "rw"\nmin = 0\n'
    text = drivers.load_profile("sim-charger").path.read_text()
    assert limit in text
    text = text.replace(limit, limit.replace("uint32", "int32").replace("min = 0", "min = -50000"))
    path = tmp_path / "signed.toml"
    path.write_text(text)
    profile = drivers.load_profile(path)
    assert not profile.bidirectional and profile.point("power_limit").min == -50000  # type: ignore[union-attr]
    dev = drivers.make_device("charger", "tcp://127.0.0.1:9", 1, profile, connectors=2)
    assert isinstance(dev, drivers.Charger) and dev.bidirectional


def test_bidirectional_key_must_be_a_boolean(tmp_path: Path) -> None:
    text = drivers.load_profile("sim-charger-v2g").path.read_text()
    path = tmp_path / "bad.toml"
    path.write_text(text.replace("bidirectional = true", 'bidirectional = "yes"'))
    with pytest.raises(drivers.ProfileError, match="bidirectional"):
        drivers.load_profile(path)
