"""A grid meter reporting the opposite sign, against the hardware simulator in real time:
the agent flags it and keeps the station under its capacity, measured on the simulator's
side; with `invert = true` on the meter the same station runs normally.

The simulator serves its grid meter from a copy of sim-meter.toml with scale = -1 on the
power points (a meter mounted the other way round); the agent reads the real sim-meter map.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from hardware_sim.simulator import Simulator
from sim_agent import CAPACITY_KW, STATION, agent_config, cycles, ev

from agent.app.assembly import build_control
from agent.config.settings import AgentSettings
from agent.control.devices import StationDevices
from agent.control.grid_sign import contradiction
from agent.model.clock import RealClock
from agent.store import connect
from drivers.profile import PROFILES_DIR

pytestmark = pytest.mark.timeout(60)


def test_contradiction_bounds() -> None:
    assert contradiction(-100.0, 100.0, 0.0, 0.0) is not None  # the example
    assert contradiction(95.0, 100.0, 0.0, 0.0) is None
    assert contradiction(-30.0, 40.0, 80.0, 0.0) is None  # PV export is legitimate
    assert contradiction(-30.0, 40.0, 0.0, 80.0) is None  # so is battery discharge
    assert contradiction(-1.0, 0.0, 0.0, 0.0) is None  # idle chargers prove nothing


def inverted_profiles(tmp_path: Path) -> Path:
    d = tmp_path / "profiles"
    shutil.copytree(PROFILES_DIR, d)
    text = (d / "sim-meter.toml").read_text()
    for name in ("power_total", "power_l1", "power_l2", "power_l3"):
        text = text.replace(f'name = "{name}"\n', f'name = "{name}"\nscale = -1\n')
    (d / "sim-meter.toml").write_text(text)
    return d


async def _run(tmp_path: Path, invert: bool) -> tuple[set[str], float]:
    async with Simulator(STATION, rtu_meter=False, profiles_dir=inverted_profiles(tmp_path)) as sim:
        sim.set(base_load_kw=10.0, pv_kw=0.0)
        cfg = agent_config(sim.endpoints, tmp_path / "agent.db")
        if invert:
            cfg["devices"][0]["invert"] = True
        settings = AgentSettings(**cfg)
        loop = build_control(settings, connect(settings.storage.db_path),
                             StationDevices(settings), RealClock())
        await loop.start()
        modes: set[str] = set()
        peak = 0.0
        try:
            await cycles(loop, 5)  # limits in place before the EVs arrive
            ev(sim, "CP1", 1, 50.0)
            ev(sim, "CP2", 1, 22.0)
            for _ in range(40):
                await cycles(loop, 1)
                modes |= set(loop.state.modes)
                peak = max(peak, sim.state()["gridImport"])
        finally:
            await loop.shutdown()
            await loop.devices.close()
        episodes = sim.overload_episodes(0.02)
        assert all(duration <= 1.0 for _, duration, _ in episodes), episodes
        return modes, sim.state()["gridImport"]


def test_inverted_meter_is_flagged_and_the_safe_budget_holds(tmp_path: Path) -> None:
    modes, grid = asyncio.run(_run(tmp_path, invert=False))
    assert "grid_meter_implausible" in modes
    # Safe budget: 60 kW - pessimistic 15 kW for the EVs; the real base load is 10 kW.
    assert grid <= CAPACITY_KW * 1.02
    assert grid > 30.0  # the EVs still charge


def test_invert_setting_reads_the_meter_right(tmp_path: Path) -> None:
    modes, grid = asyncio.run(_run(tmp_path, invert=True))
    assert "grid_meter_implausible" not in modes and "grid_meter_stale" not in modes
    assert grid <= CAPACITY_KW * 1.02
    assert grid > 50.0  # the measured 10 kW base leaves the EVs 50 kW
