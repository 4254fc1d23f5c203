"""The allocator under an electrical tree: kernel == reference on random trees (hypothesis),
every limit holds, and the result is the max-min fair vector of an LP solved independently."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from allocator import allocate, allocate_reference
from allocator.arrays import StationArrays
from tests.allocator.tree_checks import max_min_fair, random_tree, violations

LP_TREES = 300
FAIR_TOL = 0.01 + 1e-6  # kW: rounded down to the 10 W step, never above the fair share


@settings(max_examples=2000, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False))
def test_kernel_matches_reference_on_random_trees(rnd: random.Random) -> None:
    request = random_tree(rnd)
    note(repr(request))
    expected = allocate_reference(request)
    assert allocate(request) == expected
    assert violations(request, expected) == []


@pytest.mark.parametrize("block", range(6))
def test_tree_result_is_the_max_min_fair_share_of_an_lp(block: int) -> None:
    """Sequential LPs (HiGHS) find the exact lexicographic max-min vector with the allocator's
    pause choice; every allocation is within one 10 W step below it, never above."""
    per_block = LP_TREES // 6
    for seed in range(block * per_block, (block + 1) * per_block):
        request = random_tree(random.Random(seed))
        result = allocate(request)
        assert violations(request, result) == [], seed
        paused = {sid for sid, why in result["binding"].items() if why == "minimum"}
        fair = max_min_fair(request, paused)
        for s, share in zip(request["sessions"], fair, strict=True):
            got = result["allocations"][s["sessionId"]]
            assert share - FAIR_TOL <= got <= share + 1e-6, (seed, s["sessionId"], got, share)


def test_the_checks_catch_an_overloaded_phase_and_an_unfair_share() -> None:
    """The independent checks fail on wrong results, so the tests above can fail."""
    request = {"gridCapacity": 100, "circuits": [{"id": "sub", "maxCurrent": 16}],
               "chargers": [{"id": "A", "maxPower": 22, "connectors": 2, "circuit": "sub"}],
               "sessions": [{"sessionId": "a", "connectorId": {"chargerId": "A", "idx": 1},
                             "vehicleMaxPower": 7.4, "phases": 1},
                            {"sessionId": "b", "connectorId": {"chargerId": "A", "idx": 2},
                             "vehicleMaxPower": 11}]}
    result = allocate(request)
    assert violations(request, result) == []
    wrong = {**result, "allocations": {"a": 3.7, "b": 1.0}}  # 16.09 A + 1.45 A on L1
    assert violations(request, wrong)
    fair = max_min_fair(request, set())
    assert fair[0] != pytest.approx(1.0)


def test_tree_arrays_reused_across_cycles_match_allocate() -> None:
    """One StationArrays sized for a tree, refilled each cycle, gives allocate()'s numbers."""
    arrays = StationArrays(8, 16, 8)
    from allocator.request import load_into, parse_request
    for seed in range(40):
        request = random_tree(random.Random(1000 + seed), max_sessions=12)
        if len(request["chargers"]) > 8:
            continue
        req = parse_request(request)
        arrays.tree = False
        load_into(req, arrays)
        arrays.solve()
        n = len(req.sessions)
        expected = allocate(request)
        assert arrays.allocation[:n].tolist() == list(expected["allocations"].values())


def test_tree_arrays_refuse_a_cycle_and_a_bad_circuit_index() -> None:
    arrays = StationArrays(1, 1, 2)
    arrays.n_circuits = 2
    arrays.set_circuit(0, parent=1)
    arrays.set_circuit(1, parent=0)
    arrays.n_chargers = 1
    arrays.set_charger(0, 22.0, circuit=1)
    with pytest.raises(ValueError, match="cycle"):
        arrays.solve()
    with pytest.raises(ValueError, match="circuit"):
        arrays.set_charger(0, 22.0, circuit=5)


