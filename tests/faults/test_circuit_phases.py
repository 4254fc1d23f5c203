"""1-phase EVs on 3-phase chargers under a metered 32 A sub-board, `sems run` against the
simulator, with and without per-conductor currents from the chargers (issue 13).

Three 7.4 kW 1-phase EVs: on CP1 and CP2 (both on grid L1) and on CP3 (rotated: on grid L2).
Taken for 3-phase EVs, as the agent did before it learned phases, the meter's L1 showed two
thirds of the first EV's current as base load and the others found no room for a 3-phase
minimum on L1 (0.046 kWh in the window, one EV charging). Where the chargers report each
conductor's current (`sim-charger-ac`), the agent learns that they are 1-phase EVs from
those (agent/control/phase_learning.py); where they do not (`sim-charger`), from the
sub-board meter's per-phase step as each EV starts (agent/control/phase_steps.py). Either
way L1 is shared by the EVs on it and CP3's EV gets L2 to itself. Measured on the
simulator's side: the energy the EVs took, each phase's peak against the fuse, its breaker
model's trips.
"""

from __future__ import annotations

import asyncio

import pytest
from sim_agent import write_config

from tests.faults.harness import Scenario
from tests.faults.test_circuit_fuse import STATION, with_circuit

pytestmark = pytest.mark.timeout(300)

RATING_A = 32.0
EVS = {"CP1": 7.4, "CP2": 7.4, "CP3": 7.4}  # kW, 1-phase (32 A)
WINDOW_S = 40.0


async def _run(tmp_path, *, report: bool) -> dict:
    profiles = dict.fromkeys(EVS, "sim-charger-ac") if report else None
    tmp_path.mkdir()
    async with Scenario(tmp_path, station=STATION, profiles=profiles) as sc:
        write_config(with_circuit(sc.config, sc.sim.endpoints["circuitMeters"]["sub"]),
                     sc.agent.config_path)
        sc.sim.set(base_load_kw=5.0, pv_kw=0.0)
        await sc.start_agent()
        for cid, kw in EVS.items():
            sc.sim.plug(cid, 1, max_kw=kw, capacity_kwh=60.0, soc=0.2, energy_needed_kwh=40.0,
                        phases=1)
        await sc.run_for(WINDOW_S)
        sc.check_invariants()
        state = sc.sim.state()
        view = (await sc.api("GET", "/api/v1/station")).json()
        sub = state["circuits"]["sub"]
        return {
            "kwh": sum(c["ev"]["delivered"] for c in state["connectors"] if c["ev"]),
            "peak": sub["peakCurrent"], "over_s": sub["overRatingS"], "trips": state["trips"],
            "phases": {c["charger_id"]: c.get("phases") for c in view["connectors"]},
            "power": {c["chargerId"]: round(c["power"], 2) for c in state["connectors"]},
        }


def test_learning_one_phase_evs_carries_more_through_the_sub_board_without_a_trip(tmp_path):
    stepped = asyncio.run(_run(tmp_path / "stepped", report=False))
    learned = asyncio.run(_run(tmp_path / "learned", report=True))
    summary = (f"from steps: {stepped['kwh']:.3f} kWh in {WINDOW_S:g} s, now {stepped['power']} "
               f"kW, peak {[round(a, 1) for a in stepped['peak']]} A, {stepped['phases']}; "
               f"from conductors: {learned['kwh']:.3f} kWh, now {learned['power']} kW, peak "
               f"{[round(a, 1) for a in learned['peak']]} A, {learned['phases']}")
    print(summary)
    for run in (stepped, learned):
        assert not run["trips"], summary
        assert max(run["peak"]) <= RATING_A, summary
        assert run["over_s"] == 0.0, summary
        assert run["power"]["CP3"] >= 0.85 * (RATING_A - 1.0) * 0.23, summary  # L2 is its own
    # Taken for 3-phase EVs they took 0.046 kWh for 0.131 (one EV on L1, see above).
    assert stepped["kwh"] >= 0.8 * learned["kwh"], summary
    # CP2's EV, paused for the 3-phase minimum an EV of unknown phases needs, may not have
    # drawn yet: booked on one phase until it does
    assert learned["phases"]["CP1"] == learned["phases"]["CP3"] == "1-phase (measured)", summary
    assert learned["phases"]["CP2"] in ("1-phase (measured)", "1-phase (assumed)"), summary
    # A start in the cycle of another EV's change teaches nothing: assumed until a step does
    assert set(stepped["phases"].values()) <= {"1-phase (circuit meter step)",
                                               "1-phase (assumed)"}, summary
    assert "1-phase (circuit meter step)" in stepped["phases"].values(), summary
