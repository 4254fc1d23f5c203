"""Electra's API scenarios played through the API-only station, every answer compared with
the record in electra_answers.json (issue 11, "One station": the comparison that the station
replacing `ApiStation` must pass, or differ from only where the report justifies it).

To re-record after a deliberate, explained change: SEMS_RECORD_ANSWERS=1 pytest this file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from api.electra_scenarios import SCENARIOS, play
from api.live import SteppedApi

RECORD = Path(__file__).with_name("electra_answers.json")
RECORDING = os.environ.get("SEMS_RECORD_ANSWERS") == "1"


def recorded() -> dict:
    return json.loads(RECORD.read_text()) if RECORD.exists() else {}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_answers_match_the_record(tmp_path, name):
    config, steps = SCENARIOS[name]
    station = SteppedApi(tmp_path, config).start()
    try:
        got = play(station, steps)
    finally:
        station.stop()
    if RECORDING:
        record = recorded()
        record[name] = got
        RECORD.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    expected = recorded().get(name)
    assert expected is not None, f"no record for {name!r}: run with SEMS_RECORD_ANSWERS=1"
    assert got == expected


def test_every_recorded_scenario_still_exists():
    assert set(recorded()) == set(SCENARIOS)
