"""Electra's API scenarios played through the station with no configured chargers, every
answer compared with the record in electra_answers.json (issue 11, "One station").

The record is data produced by the old path, `ApiStation` (agent/app/api_station.py, deleted
once the daemon ran `VirtualStation`), before its deletion: HTTP answers and status codes,
each session's allocation and binding, the store's session rows (status, stop reason,
energy, peak, the limit handed out) and the session events the uplink is handed, through
session creation, consumption reports, stops, caps, several sessions, configuration
replacement, power caps, silence and a SIGKILL-and-restart. The new path (virtual chargers
under the daemon's controller, agent/app/virtual_station.py) gave every one of these answers
while both existed (commit 733c253, "VirtualStation: ..."): numbers compare to 0.01 (kW, kWh),
everything else exactly. The old code being gone, the record is not re-recorded: a change
of answer must be justified in `JUSTIFIED` (the difference and why), so any other difference,
or one of those going away, fails.

`IMPLEMENTATIONS` is the seam: each entry builds a station from (config, store, clock,
signals, event hook); every scenario runs through every entry.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from api.electra_scenarios import SCENARIOS, play
from api.live import SteppedApi, virtual_station

RECORD = Path(__file__).with_name("electra_answers.json")
TOLERANCE = 0.01  # kW, kWh: the API's allocations are floored to 0.01 kW
IMPLEMENTATIONS = {"virtual_station": virtual_station}

JUSTIFIED: dict[str, dict[str, list[str]]] = {"virtual_station": {}}


def recorded() -> dict:
    return json.loads(RECORD.read_text())


def differences(got: Any, want: Any, where: str = "") -> list[str]:
    """Where `got` differs from `want`: numbers by more than TOLERANCE, anything else at all."""
    if isinstance(want, bool) or isinstance(got, bool) or want is None or got is None:
        return [] if got == want else [f"{where}: {got!r} != {want!r}"]
    if isinstance(want, int | float) and isinstance(got, int | float):
        return [] if math.isclose(got, want, abs_tol=TOLERANCE) else [f"{where}: {got} != {want}"]
    if isinstance(want, dict) and isinstance(got, dict):
        if set(got) != set(want):
            return [f"{where}: keys {sorted(set(got) ^ set(want))} differ"]
        return [d for k in want for d in differences(got[k], want[k], f"{where}.{k}")]
    if isinstance(want, list) and isinstance(got, list):
        if len(got) != len(want):
            return [f"{where}: {len(got)} items != {len(want)}"]
        return [d for i, (g, w) in enumerate(zip(got, want, strict=True))
                for d in differences(g, w, f"{where}[{i}]")]  # fmt: skip
    return [] if got == want else [f"{where}: {got!r} != {want!r}"]


@pytest.mark.parametrize("impl", sorted(IMPLEMENTATIONS))
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_answers_match_the_record(tmp_path, name, impl):
    config, steps = SCENARIOS[name]
    station = SteppedApi(tmp_path, config, make=IMPLEMENTATIONS[impl]).start()
    try:
        got = play(station, steps)
    finally:
        station.stop()
    expected = recorded().get(name)
    assert expected is not None, f"no record for {name!r}"
    assert differences(got, expected) == JUSTIFIED[impl].get(name, [])


def test_the_comparison_sees_a_difference():
    """The comparison itself: 0.01 kW passes, more does not, and shapes must agree."""
    want = [{"a": 10.0, "b": "x", "c": None}]
    assert differences([{"a": 10.005, "b": "x", "c": None}], want) == []
    assert differences([{"a": 10.02, "b": "x", "c": None}], want) == ["[0].a: 10.02 != 10.0"]
    assert differences([{"a": 10.0, "b": "y", "c": None}], want) != []
    assert differences([{"a": 10.0, "b": "x", "c": 0.0}], want) != []
    assert differences([], want) != []


def test_every_recorded_scenario_still_exists():
    assert set(recorded()) == set(SCENARIOS)


def allocations(answer: dict) -> list[float] | None:
    """The allocations an answer shows for every active session, if it shows them all."""
    if isinstance(answer.get("sessions"), dict):  # GET /station/status
        return [s["allocatedPower"] for s in answer["sessions"].values()]
    if isinstance(answer.get("sessions"), list) and answer["sessions"] and \
            "allocated_kw" in answer["sessions"][0]:  # GET /api/v1/station/sessions
        return [s["allocated_kw"] for s in answer["sessions"]]
    return None


def budget_of(config: dict) -> float:
    return float(config["gridCapacity"]) - float(config.get("baseLoad") or 0.0)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_allocations_never_exceed_the_budget(tmp_path, name):
    """Every picture of all the sessions, at every step of every scenario (after creations
    before any cycle, after resumes, across reconfigurations), fits gridCapacity - baseLoad
    of the configuration in force (a power cap lowers it from the next cycle on)."""
    config, steps = SCENARIOS[name]
    station = SteppedApi(tmp_path, config).start()
    try:
        record = play(station, steps)
    finally:
        station.stop()
    budget = budget_of(config)
    for (method, path, body, _), entry in zip(steps, record, strict=True):
        if method == "POST" and path == "/station/config" and entry["status"] == 200:
            budget = budget_of(body)
        if method == "restart" and path is not None:  # restarted with this configuration
            budget = budget_of(path)
        answer = entry.get("answer")
        shown = allocations(answer) if isinstance(answer, dict) else None
        if shown is not None:
            assert sum(shown) <= budget + 1e-6, (entry["request"], shown, budget)
