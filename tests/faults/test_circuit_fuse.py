"""A 32 A sub-board, three 11 kW AC chargers and 1-phase EVs under `sems run`: no trip and no
phase over its rating, measured on the simulator's side (its breaker model, hardware-sim/
fuses.py). The agent is not told the EVs' phases and the chargers report no per-conductor
currents: it books each EV on one phase until the sub-board meter's per-phase step shows its
count (agent/control/phase_steps.py), and the meter's per-phase currents keep L1 (two EVs on
it) within the fuse."""

from __future__ import annotations

import asyncio

import pytest
from sim_agent import write_config

from tests.faults.harness import Scenario

pytestmark = pytest.mark.timeout(180)

RATING_A = 32.0
STATION = {
    "stationId": "SIM1",
    "gridCapacity": 60.0,
    "circuits": [{"id": "sub", "maxCurrent": RATING_A, "meter": True, "baseLoad": 1.0}],
    "chargers": [
        {"id": "CP1", "maxPower": 11.0, "kind": "ac", "circuit": "sub"},
        {"id": "CP2", "maxPower": 11.0, "kind": "ac", "circuit": "sub"},
        {"id": "CP3", "maxPower": 11.0, "kind": "ac", "circuit": "sub",
         "phaseRotation": "L2L3L1"},
    ],
}  # fmt: skip


def with_circuit(config: dict, meter: dict) -> dict:
    """The agent's settings: the sub-board, its meter device, the chargers' places."""
    config["devices"].append({"name": "sub-meter", "kind": "meter", "profile": meter["profile"],
                              "unit_id": meter["unit"], "endpoint": f"tcp://{meter['tcp']}"})
    config["station"]["circuits"] = [{"id": "sub", "max_current_a": RATING_A,
                                      "meter": "sub-meter"}]
    rotations = {c["id"]: c.get("phaseRotation", "L1L2L3") for c in STATION["chargers"]}
    for ch in config["station"]["chargers"]:
        ch.update(circuit="sub", phase_rotation=rotations[ch["id"]])
    return config


def test_one_phase_evs_under_a_32a_sub_board_never_trip_it(tmp_path):
    asyncio.run(_sub_board(tmp_path))


async def _sub_board(tmp_path):
    async with Scenario(tmp_path, station=STATION) as sc:
        write_config(with_circuit(sc.config, sc.sim.endpoints["circuitMeters"]["sub"]),
                     sc.agent.config_path)
        sc.sim.set(base_load_kw=5.0, pv_kw=0.0)
        await sc.start_agent()
        for cid in ("CP1", "CP2", "CP3"):  # 1-phase EVs taking 32 A (7.4 kW) each
            sc.sim.plug(cid, 1, max_kw=7.4, capacity_kwh=60.0, soc=0.2, energy_needed_kwh=40.0,
                        phases=1)
        await sc.run_for(20.0)
        sc.sim.unplug("CP3", 1)  # L2 frees up; L1 keeps its two EVs
        await sc.run_for(10.0)
        sc.check_invariants()
        state = sc.sim.state()
        sub = state["circuits"]["sub"]
        peak = max(sub["peakCurrent"])
        summary = (f"sub-board peak per phase {[round(a, 2) for a in sub['peakCurrent']]} A "
                   f"(rating {RATING_A:g} A), now {[round(a, 2) for a in sub['current']]} A, "
                   f"trips {state['trips']}")
        print(summary)
        assert not state["trips"], summary
        assert peak <= RATING_A, summary
        assert sub["overRatingS"] == 0.0, summary
        # and the fuse is used: L1 reached what it may carry (32 A - the 1 A margin)
        assert sub["peakCurrent"][0] >= 0.95 * (RATING_A - 1.0), summary
        assert "circuit_meter_stale" not in sc.agent.log()
        # `sems status` (GET /api/v1/station) shows the sub-board as its meter measures it
        view = (await sc.api("GET", "/api/v1/station")).json()
        [shown] = view["circuits"]
        now = sc.sim.state()["circuits"]["sub"]["current"]
        assert shown["id"] == "sub" and shown["max_current_a"] == RATING_A
        assert shown["current_a"][1] == pytest.approx(now[1], abs=0.5)  # base only on L2
        assert 0.0 < shown["current_a"][0] <= RATING_A


def test_a_silent_sub_board_meter_degrades_that_circuit_only(tmp_path):
    asyncio.run(_silent_sub_meter(tmp_path))


async def _silent_sub_meter(tmp_path):
    async with Scenario(tmp_path, station=STATION) as sc:
        write_config(with_circuit(sc.config, sc.sim.endpoints["circuitMeters"]["sub"]),
                     sc.agent.config_path)
        sc.sim.set(base_load_kw=5.0, pv_kw=0.0)
        await sc.start_agent()
        for cid in ("CP1", "CP2", "CP3"):
            sc.sim.plug(cid, 1, max_kw=7.4, capacity_kwh=60.0, soc=0.2, energy_needed_kwh=40.0,
                        phases=1)
        await sc.run_for(8.0)
        sc.sim.inject("meter:sub", "silent")
        await sc.agent.wait_log(r"degraded mode on: .*circuit_meter_stale:sub")
        await sc.run_for(8.0)
        state = sc.sim.state()
        sub = state["circuits"]["sub"]
        # held at the fallbacks, which fit the fuse with all current on one phase: they are
        # sized to its rating (agent/config/circuits.py `circuit_fallback_kw`), and EVs learned
        # 1-phase from the meter's steps (minimum 1.38 kW) all run at them
        assert sum(c["power"] for c in state["connectors"]) * 1000 / 230 <= RATING_A
        assert "grid_meter_stale" not in sc.agent.log()
        sc.sim.clear("meter:sub")
        await sc.agent.wait_log(r"degraded mode off: .*circuit_meter_stale:sub")
        await sc.run_for(5.0)
        sc.check_invariants()
        sub = sc.sim.state()["circuits"]["sub"]
        summary = f"sub-board peak per phase {[round(a, 2) for a in sub['peakCurrent']]} A"
        print(summary)
        assert not sc.sim.state()["trips"], summary
        assert max(sub["peakCurrent"]) <= RATING_A, summary
