"""Tree cases converted from other projects' published expectations, each with its source.

Conversions: their amps per phase become our kW (P = phases * 230 V * A / 1000); a node's
measured non-EV load becomes the circuit's baseCurrent or basePower; where their result differs
because they share by priority or first come first served (we share max-min fairly), the test
says so and checks our fair answer, which keeps the same total on the binding phase.
Both engines are run on every case (`run` fixture).
"""

from __future__ import annotations

from typing import Any

import pytest

from allocator import allocate, allocate_reference

V = 230.0


@pytest.fixture(params=[allocate, allocate_reference], ids=["kernel", "reference"])
def run(request: pytest.FixtureRequest) -> Any:
    return request.param


def kw(amps: float, phases: int = 3) -> float:
    return phases * V * amps / 1000


def session(sid: str, charger: str, vehicle_kw: float, **extra: Any) -> dict[str, Any]:
    return {"sessionId": sid, "connectorId": {"chargerId": charger, "idx": 1},
            "vehicleMaxPower": vehicle_kw, **extra}


# --- EVerest everest-core, modules/EnergyManager/tests/json_tests -----------------------------

def test_everest_two_ac_evse_load_balancing(run: Any) -> None:
    """EVerest 1_0_two_ac_evse_load_balancing.json: grid connection 32 A per phase, two
    3-phase EVSEs (min 6 A), EVSE2 limited to 8 A towards its leaves; expected EVSE1 24 A,
    EVSE2 8 A."""
    request = {"gridCapacity": 100, "voltage": V,
               "circuits": [{"id": "grid_connection", "maxCurrent": 32}],
               "chargers": [{"id": "evse1", "maxPower": 22.08, "connectors": 1,
                             "circuit": "grid_connection", "maxCurrent": 32},
                            {"id": "evse2", "maxPower": 22.08, "connectors": 1,
                             "circuit": "grid_connection", "maxCurrent": 8}],
               "sessions": [session("e1", "evse1", 22.08, minPower=kw(6)),
                            session("e2", "evse2", 22.08, minPower=kw(6))]}
    result = run(request)
    assert result["currents"]["e1"] == [24.0, 24.0, 24.0]
    assert result["currents"]["e2"] == [8.0, 8.0, 8.0]
    assert result["binding"] == {"e1": "circuit", "e2": "charger"}
    assert result["bindingCircuit"] == {"e1": "grid_connection"}


def test_everest_two_dc_evse_load_balancing(run: Any) -> None:
    """EVerest 11_two_dc_evse_load_balancing.json: grid 120 A per phase; DC EVSE1 (60 A,
    50 kW) and EVSE2 (80 A, 60 kW) draw balanced on three phases; expected 60 A and 41.4 kW
    each."""
    request = {"gridCapacity": 500, "voltage": V,
               "circuits": [{"id": "grid_connection", "maxCurrent": 120}],
               "chargers": [{"id": "evse1", "maxPower": 50, "connectors": 1, "dc": True,
                             "circuit": "grid_connection", "maxCurrent": 60},
                            {"id": "evse2", "maxPower": 60, "connectors": 1, "dc": True,
                             "circuit": "grid_connection", "maxCurrent": 80}],
               "sessions": [session("e1", "evse1", 150), session("e2", "evse2", 150)]}
    result = run(request)
    assert result["allocations"] == {"e1": 41.4, "e2": 41.4}
    assert result["currents"]["e2"] == [60.0, 60.0, 60.0]


# --- evcc: docs.evcc.io/en/docs/features/loadmanagement and core/circuit/circuit_test.go -------

def test_evcc_main_circuit_example(run: Any) -> None:
    """evcc load-management docs, "Example: Main Circuit": maxCurrent 63 A, other consumers
    using 50 A: the charger may use 13 A."""
    request = {"gridCapacity": 1000, "voltage": V,
               "circuits": [{"id": "main", "maxCurrent": 63, "maxPower": 30,
                             "baseCurrent": [50, 50, 50]}],
               "chargers": [{"id": "garage", "maxPower": 22.08, "connectors": 1, "circuit": "main"}],
               "sessions": [session("lp", "garage", 22.08)]}
    result = run(request)
    assert result["currents"]["lp"] == [13.0, 13.0, 13.0]
    assert result["bindingCircuit"] == {"lp": "main"}


# evcc circuit_test.go table {parent load, circuit-1 load, circuit-2 load, old demand, new
# demand, allowed}; limits are 1 on the parent and both circuits. The measured loads include the
# loadpoint's old demand, so the base (non-EV) load is measured - old (never below 0 here: the
# contract's base loads are >= 0, so evcc's "negative load" row, which counts export as
# headroom, is left out).
EVCC_ROWS = [
    (0, 0, 0, 0, 0, 0), (0, 0, 0, 0, 1, 1), (0, 0, 0, 0, 2, 1), (0, 0, 0, 1, 1, 1),
    (0, 1, 0, 0, 0, 0), (0, 1, 0, 0, 1, 0), (0, 1, 0, 0, 2, 0), (0, 1, 0, 1, 1, 1),
    (0, 1, 0, 2, 1, 1), (0, 2, 0, 0, 0, 0), (0, 2, 0, 0, 1, 0), (0, 2, 0, 1, 1, 0),
    (0, 2, 0, 2, 2, 1), (0, 2, 0, 2, 3, 1), (0, 2, 0, 2, 1, 1), (0, 1.1, 0, 2, 1, 1),
    (0, 1.1, 0, 1, 0, 0), (1, 0, 0, 0, 0, 0), (1, 0, 0, 0, 1, 0), (1, 0, 0, 0, 2, 0),
    (1, 0, 0, 1, 1, 1), (1, 0, 0, 2, 1, 1), (2, 0, 0, 0, 0, 0), (2, 0, 0, 0, 1, 0),
    (2, 0, 0, 1, 1, 0), (2, 0, 0, 2, 2, 1), (2, 0, 0, 2, 3, 1), (2, 0, 0, 2, 1, 1),
    (1.1, 0, 0, 2, 1, 1), (1.1, 0, 0, 1, 0, 0),
]


@pytest.mark.parametrize(("p", "c1", "c2", "old", "new", "allowed"), EVCC_ROWS)
def test_evcc_circuit_power_table(run: Any, p: float, c1: float, c2: float, old: float,
                                  new: float, allowed: float) -> None:
    """evcc TestCircuitPower (kW here): a loadpoint under circuit 1, both circuits under a
    parent, each limited to 1."""
    request = {"gridCapacity": 100,
               "circuits": [{"id": "parent", "maxPower": 1, "basePower": max(p - old, 0)},
                            {"id": "c1", "parent": "parent", "maxPower": 1,
                             "basePower": max(c1 - old, 0)},
                            {"id": "c2", "parent": "parent", "maxPower": 1, "basePower": c2}],
               "chargers": [{"id": "lp", "maxPower": 50, "connectors": 1, "circuit": "c1"}],
               "sessions": [session("s", "lp", new)]}
    assert run(request)["allocations"]["s"] == allowed


@pytest.mark.parametrize(("p", "c1", "c2", "old", "new", "allowed"), EVCC_ROWS)
def test_evcc_circuit_current_table(run: Any, p: float, c1: float, c2: float, old: float,
                                    new: float, allowed: float) -> None:
    """evcc TestCircuitCurrents: the same table in A per phase (3-phase loadpoint)."""
    def base(load: float) -> list[float]:
        return [max(load, 0)] * 3

    request = {"gridCapacity": 100, "voltage": V,
               "circuits": [{"id": "parent", "maxCurrent": 1, "baseCurrent": base(p - old)},
                            {"id": "c1", "parent": "parent", "maxCurrent": 1,
                             "baseCurrent": base(c1 - old)},
                            {"id": "c2", "parent": "parent", "maxCurrent": 1, "baseCurrent": base(c2)}],
               "chargers": [{"id": "lp", "maxPower": 50, "connectors": 1, "circuit": "c1"}],
               "sessions": [session("s", "lp", kw(new))]}
    result = run(request)
    assert result["currents"]["s"] == [allowed] * 3


# --- Dynamic_OCPP_EVSE (LeoAlioth), tests/scenarios/test_scenarios_3ph.yaml -------------------
# Their site's per-phase headroom (solar production / 230 V / 3, or the breaker) becomes a
# circuit's maxCurrent; phase_x_consumption its baseCurrent; a charger's connected_to_phase its
# phaseRotation; min_current 6 A its minPower.

def _site(available_a: float, consumption: list[float], chargers: list[dict[str, Any]],
          sessions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"gridCapacity": 100, "voltage": V,
            "circuits": [{"id": "site", "maxCurrent": available_a, "baseCurrent": consumption}],
            "chargers": chargers, "sessions": sessions}


def test_dynamic_ocpp_two_single_phase_chargers_on_different_phases(run: Any) -> None:
    """'3ph-2c-solar-sym-two-single-phase': 12 kW solar (17.39 A per phase), consumption
    2 / 1 / 1 A; 1-phase chargers (16 A) on A and B: expected 15.4 A and 16 A."""
    available = 12000 / V / 3
    result = run(_site(available, [2, 1, 1],
                       [{"id": "c1", "maxPower": 3.68, "connectors": 1, "circuit": "site", "phases": 1,
                         "maxCurrent": 16},
                        {"id": "c2", "maxPower": 3.68, "connectors": 1, "circuit": "site", "phases": 1,
                         "phaseRotation": "L2L3L1", "maxCurrent": 16}],
                       [session("s1", "c1", 7.4, minPower=kw(6, 1)),
                        session("s2", "c2", 7.4, minPower=kw(6, 1))]))
    assert result["currents"]["s1"][0] == pytest.approx(15.39, abs=0.05)
    assert result["currents"]["s2"] == [0.0, 16.0, 0.0]
    assert result["binding"] == {"s1": "circuit", "s2": "charger"}


def test_dynamic_ocpp_very_unbalanced_phase_pauses_the_three_phase_ev(run: Any) -> None:
    """'3ph-1c-solar-very-unbalanced': 10 A per phase, phase A carries 8 A: 2 A left is below
    the 6 A minimum, so the 3-phase charger gets 0."""
    result = run(_site(6900 / V / 3, [8, 0.5, 0.5],
                       [{"id": "c1", "maxPower": 11.04, "connectors": 1, "circuit": "site",
                         "maxCurrent": 16}],
                       [session("s1", "c1", 11.04, minPower=kw(6))]))
    assert result["allocations"] == {"s1": 0.0}
    assert result["binding"] == {"s1": "minimum"}


def test_dynamic_ocpp_two_phase_obc(run: Any) -> None:
    """'3ph-1c-solar-2ph-obc-normal': a 2-phase on-board charger on A and B, 10 A per phase,
    phase B carries 2 A: expected 8 A."""
    result = run(_site(6900 / V / 3, [1, 2, 1],
                       [{"id": "c1", "maxPower": 11.04, "connectors": 1, "circuit": "site",
                         "maxCurrent": 16}],
                       [session("s1", "c1", 7.36, phases=2, minPower=kw(6, 2))]))
    assert result["currents"]["s1"] == [8.0, 8.0, 0.0]


def test_dynamic_ocpp_two_2ph_chargers_share_phase_b_fairly(run: Any) -> None:
    """'3ph-2c-solar-two-2ph-different-phases': 9.2 kW solar (13.33 A per phase), 1 A on each;
    2-phase chargers on AB and BC share phase B's 12.33 A. Their priority mode gives 6.3 / 6.0;
    max-min fairness gives each half (6.16 A), the same total on B."""
    available = 9200 / V / 3
    result = run(_site(available, [1, 1, 1],
                       [{"id": "c1", "maxPower": 7.36, "connectors": 1, "circuit": "site",
                         "maxCurrent": 16},
                        {"id": "c2", "maxPower": 7.36, "connectors": 1, "circuit": "site",
                         "phaseRotation": "L2L3L1", "maxCurrent": 16}],
                       [session("s1", "c1", 7.36, phases=2, minPower=kw(6, 2)),
                        session("s2", "c2", 7.36, phases=2, minPower=kw(6, 2))]))
    a, b = result["currents"]["s1"], result["currents"]["s2"]
    assert a[2] == b[0] == 0.0  # AB and BC: grid phases L1 L2 and L2 L3
    assert a[1] == b[1] == pytest.approx((available - 1) / 2, abs=0.03)
    assert a[1] + b[1] <= available - 1 + 1e-6
    assert result["binding"] == {"s1": "circuit", "s2": "circuit"}


EXAMPLE_REQUEST = {
    "stationId": "DEPOT_7", "gridCapacity": 100, "voltage": 230,
    "circuits": [{"id": "main", "maxCurrent": 100, "baseCurrent": [10, 4, 6]},
                 {"id": "sub", "parent": "main", "maxCurrent": 32}],
    "chargers": [{"id": "A", "maxPower": 22, "connectors": 1, "circuit": "sub", "maxCurrent": 32},
                 {"id": "B", "maxPower": 22, "connectors": 1, "circuit": "sub", "maxCurrent": 32,
                  "phaseRotation": "L2L3L1"},
                 {"id": "C", "maxPower": 22, "connectors": 1, "circuit": "sub", "maxCurrent": 32,
                  "phaseRotation": "L3L1L2"},
                 {"id": "D", "maxPower": 50, "connectors": 1, "circuit": "main", "dc": True}],
    "sessions": [
        {"sessionId": "a", "connectorId": {"chargerId": "A", "idx": 1}, "vehicleMaxPower": 7.4,
         "phases": 1, "minPower": 1.38},
        {"sessionId": "b", "connectorId": {"chargerId": "B", "idx": 1}, "vehicleMaxPower": 11,
         "minPower": 4.14},
        {"sessionId": "c", "connectorId": {"chargerId": "C", "idx": 1}, "vehicleMaxPower": 11,
         "minPower": 4.14},
        {"sessionId": "d", "connectorId": {"chargerId": "D", "idx": 1}, "vehicleMaxPower": 150}]}


def test_docs_worked_example_one_phase_ev_bottleneck(run: Any) -> None:
    """docs/allocation.md's worked example, checked by hand there: the 1-phase EV puts 6 x its
    share on L1 of the 32 A sub-board, so L1 fills first and holds all three EVs under it at
    4.41 kW; the DC charger under the main board takes what its 100 A phases leave."""
    assert run(EXAMPLE_REQUEST) == EXAMPLE_RESULT


EXAMPLE_RESULT = {
    "allocations": {"a": 4.41, "b": 4.41, "c": 4.41, "d": 40.02},
    "batteryPower": 0.0, "gridPower": 53.25,
    "binding": {"a": "circuit", "b": "circuit", "c": "circuit", "d": "circuit"},
    "currents": {"a": [19.173913, 0.0, 0.0], "b": [6.391304, 6.391304, 6.391304],
                 "c": [6.391304, 6.391304, 6.391304], "d": [58.0, 58.0, 58.0]},
    "bindingCircuit": {"a": "sub", "b": "sub", "c": "sub", "d": "main"},
}
