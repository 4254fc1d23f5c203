"""`make bench`'s TriggerMessage case: bench/ocpp_trigger.py's per-run figures summarised
(median, max, runs where it did not happen) and rendered into docs/performance.md by
bench/run_all.py.

The runs are what `bench/ocpp_trigger.py --runs 3 --json` printed on this machine
(2026-12-07), 1.6J, the first repetition of each mode
and a third run made up from them."""

from __future__ import annotations

import copy
from typing import Any

from bench import ocpp_trigger, run_all

ANSWERED: dict[str, Any] = {
    "version": "1.6", "triggers": True, "squeezed": True, "hiddenAtPause": True,
    "sampleAgeS": 2.55, "thresholdKw": 3.23, "sampleS": 0.15, "heldS": 0.0, "releasedS": 7.54,
    "capS": 7.54, "increaseS": 10.15, "triggerMessages": {"CP1": 1, "CP2": 3},
    "meterOnTrigger": {"CP1": 7, "CP2": 9}, "subPeakA": [8.7, 30.92, 6.52], "ratingA": 32.0,
    "overRatingS": 0.0, "trips": 0,
}  # fmt: skip
# the same pause with triggers refused: only what differs
REFUSED: dict[str, Any] = {
    **ANSWERED, "triggers": False, "sampleAgeS": 2.54, "sampleS": 7.6, "releasedS": 7.71,
    "capS": 17.8, "increaseS": 20.3, "triggerMessages": {"CP1": 0, "CP2": 0},
    "meterOnTrigger": {"CP1": 0, "CP2": 0},
}  # fmt: skip


def _runs() -> list[dict[str, Any]]:
    late = copy.deepcopy(REFUSED)  # a pause the freed share did not reach CP2 within
    late.update(increaseS=None, capS=None, subPeakA=[8.7, 31.5, 6.52])
    quick = copy.deepcopy(ANSWERED)
    quick.update(releasedS=2.31, capS=2.31, increaseS=4.91,
                 triggerMessages={"CP1": 2, "CP2": 8})
    return [ANSWERED, REFUSED, late, quick]


def test_the_summary_is_median_max_and_what_did_not_happen() -> None:
    answered, refused = ocpp_trigger.summarise(_runs())
    assert answered["triggers"] and not refused["triggers"]
    assert answered["increaseS"] == {"median": 7.53, "max": 10.15, "missing": 0}
    assert answered["triggerMessages"] == {"median": 7.0, "max": 10}
    # the run without an increase is counted as such, not as a time
    assert refused["increaseS"] == {"median": 20.3, "max": 20.3, "missing": 1}
    assert refused["subPeakA"] == 31.5 and refused["runs"] == 2


def test_make_bench_runs_it_and_renders_its_table() -> None:
    case = next(b for b in run_all.BENCHES if b.name == "ocpp-trigger")
    assert case.script == "bench/ocpp_trigger.py"
    rows = ocpp_trigger.summarise(_runs())
    data = {"machine": {"date": "2026-12-07 16:00 UTC", "nproc": 2, "cpu": "test CPU",
                        "memGb": 23.5, "kernel": "6", "python": "3.11",
                        "loadBefore": [5.9, 5.2, 3.6], "loadAfter": [6.0, 5.0, 4.0],
                        "totalWallS": 300.0},
            "benches": {"ocpp-trigger": {"result": {"rows": rows}, "wallS": 300.0,
                                         "args": " ".join(case.args), "note": case.note}}}
    doc = run_all.render(data)
    section = doc[doc.index("## OCPP TriggerMessage"):]
    assert ("| 1.6 | answered | 2 | 0.15 / 0.15 | 4.92 / 7.54 | 4.92 / 7.54 | 7.53 / 10.15 | "
            "7 | 30.92 A |") in section
    assert ("| 1.6 | refused | 2 | 7.60 / 7.60 | 7.71 / 7.71 | 17.80 / 17.80 (1 none) | "
            "20.30 / 20.30 (1 none) | 0 | 31.50 A |") in section
