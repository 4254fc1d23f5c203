"""What TriggerMessage "MeterValues" buys: an EV pausing by itself behind a 10 s meter value,
with charge points that answer the trigger and charge points that refuse it, side by side.

The station of tests/ocpp/test_ocpp_ev_pause.py (tests/ocpp/ev_pause_station.py: a metered
32 A sub-board with 5 kW of other load, two 1-phase 7.4 kW chargers on its L2, each EV
wanting more than L2 leaves it), the agent's central system and control loop in this
process, OCPP 1.6J or 2.0.1 over loopback, meter values every 10 s. Once both EVs are
squeezed, CP1's EV pauses by itself (the simulator's `pause_ev`) for PAUSE_S. Its charger's
sample still says it draws its share; the sub-board meter shows the fall at once, which the
agent holds out of the headroom for increases (agent/control/unseen_drops.py) and, while it
holds, asks CP1 for a sample (agent/control/loop.py `_ask_samples`). CP1's share is freed
once the agent caps it at its draw (`cap_after_s`, agent/control/caps.py), and CP2 may then
take more than an equal share of L2.

Before the pause the bench waits (at most READY_S) until CP1's last sample, as the agent
holds it, shows CP1 drawing ("hidden": the pause is then behind a stale sample) and is
AGES_S[i] old (within AGE_WINDOW_S): 2.5, 5 or 7.5 s by repetition, the same for both
modes (a pause right after a sample would meet the agent's 2 s gap between a sample and a
trigger, agent/ocpp/charger.py TRIGGER_GAP_S; one just before the next sample would show
no difference). That CP1's sample shows it drawing is the premise (a sample taken at 0
would show the pause at once); before limit_lag.py waited for a sample to prove a raise,
the squeeze sent both EVs to 0 and back now and then with 10 s samples and the check was
needed to skip those. Since, neither EV stops in the squeeze (tests/ocpp/
test_ocpp_squeeze_interval.py: 0 of 192 quarter seconds), so any sample of CP1 shows it
drawing: a guard, no longer a workaround. Per run, all times
in simulated seconds (time factor 1) from the pause, polled every POLL_S on the
simulator's side unless said otherwise:
- sample: CP1's first MeterValues (or TransactionEvent) frame sent after the pause;
- held / released: the agent first holds a fall behind CP1's sample, and first no longer
  (agent side: its `unseen.behind`);
- cap: CP1's limit, as its charge point accepted it, at or below its minimum (1.38 kW);
- increase: CP2's limit, as its charge point accepted it, above an equal share of L2's room
  by INCREASE_MARGIN_KW (only possible with CP1's share given away);
- triggers: TriggerMessage frames the charge points received in the pause window;
- the sub-board's peak current per phase over the whole run (the breaker model).

N repetitions per version, triggers answered / refused alternating first. A time that did
not happen within the pause (and AFTER_S after it) is None (a "-" in the table) and left
out of the median.

    python bench/ocpp_trigger.py [--runs 3] [--versions 1.6,2.0.1] [--pause-s 25] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Run as a script, this folder comes first on sys.path, where bench/allocator.py would shadow
# the allocator package; the station set-up is the test's (tests/ocpp/ev_pause_station.py).
_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path[:0] = [_ROOT, os.path.join(_ROOT, "tests"), os.path.join(_ROOT, "tests", "ocpp")]

METER_S = 10  # the meter value interval asked (many real chargers refuse less)
PAUSE_S = 25.0  # simulated s: longer than a periodic sample, cap_after_s and another sample
POLL_S = 0.05
AGES_S = (2.5, 5.0, 7.5)  # CP1's sample this old at the pause, repetition by repetition
AGE_WINDOW_S = 1.0
READY_S = 90.0  # at most this long for CP1's sample to show it drawing before the pause
AFTER_S = 5.0  # polled on after the pause: the sub-board's peak as CP1's EV resumes
VOLTAGE = 230.0
L2_BASE_SHARE = 0.3  # the simulator spreads a circuit's base load 40/30/30 % over L1/L2/L3
MIN_KW = 1.38  # a 1-phase charger's 6 A minimum (ocpp_station.metered_sub_board)
INCREASE_MARGIN_KW = 0.3


def equal_share_kw() -> float:
    """Half of what L2 leaves the two EVs: more than this is CP1's share given away."""
    from ev_pause_station import BASE_LOAD_KW, RATING_A

    base_a = BASE_LOAD_KW * 1000.0 * L2_BASE_SHARE / VOLTAGE
    return (RATING_A - base_a) * VOLTAGE / 1000.0 / 2


def _meter_frames(frames: list[str]) -> int:
    return sum(1 for f in frames if '"MeterValues"' in f or '"TransactionEvent"' in f)


def _triggers(frames: list[str]) -> int:
    return sum(1 for f in frames if '"TriggerMessage"' in f)


async def run_case(version: str, triggers: bool, pause_s: float, age_s: float) -> dict[str, Any]:
    from ev_pause_station import RATING_A, peak, squeezed_station

    threshold = equal_share_kw() + INCREASE_MARGIN_KW
    with tempfile.TemporaryDirectory() as tmp:
        async with squeezed_station(Path(tmp), version, meter_s=METER_S,
                                    triggers=triggers) as sq:  # fmt: skip
            st = sq.st
            cp1, cp2 = st.cps["CP1"], st.cps["CP2"]
            unseen = st.loop.controller.unseen  # type: ignore[union-attr]
            agent_cp1 = st.cs.chargers["CP1"].conns[1]

            def hidden() -> bool:  # CP1 draws, and its last sample, `age_s` old, shows it
                age = time.time() - (agent_cp1.power_ts or 0.0)
                return (age_s <= age < age_s + AGE_WINDOW_S
                        and (agent_cp1.power_kw or 0.0) >= sq.low and st.power("CP1", 1) >= sq.low)

            # The pause must fall behind a sample that shows CP1 drawing: a sample taken at 0
            # would show the pause at once (a guard: the squeeze no longer goes to 0 and back
            # with 10 s samples, docs/ocpp.md).
            ready = await st.until(hidden, READY_S, POLL_S)
            age = round(time.time() - (agent_cp1.power_ts or 0.0), 2)
            sent0 = _meter_frames(cp1.sent)
            trig0 = {cid: _triggers(cp.received) for cid, cp in st.cps.items()}
            t0 = st.sim.model.t
            st.sim.pause_ev("CP1", 1, pause_s)
            at: dict[str, float | None] = dict.fromkeys(
                ("sample", "held", "released", "cap", "increase"))
            for _ in range(int((pause_s + AFTER_S) / POLL_S)):
                t = round(st.sim.model.t - t0, 2)
                if at["sample"] is None and _meter_frames(cp1.sent) > sent0:
                    at["sample"] = t
                behind = ("CP1", 1) in unseen.behind
                if at["held"] is None and behind:
                    at["held"] = t  # the agent holds a fall behind CP1's sample
                if at["held"] is not None and at["released"] is None and not behind:
                    at["released"] = t  # ... and no longer
                if at["cap"] is None and cp1.limits_kw()[1] <= MIN_KW + 1e-6:
                    at["cap"] = t
                if at["increase"] is None and cp2.limits_kw()[1] > threshold:
                    at["increase"] = t
                await asyncio.sleep(POLL_S)
            trig = {cid: _triggers(cp.received) - trig0[cid] for cid, cp in st.cps.items()}
            state = st.sim.state()
            sub = state["circuits"]["sub"]
            return {"version": version, "triggers": triggers, "squeezed": sq.squeezed,
                    "hiddenAtPause": ready, "sampleAgeS": age,
                    "thresholdKw": round(threshold, 2),
                    **{f"{k}S": v for k, v in at.items()},
                    "triggerMessages": trig,
                    "meterOnTrigger": {cid: cp.triggered for cid, cp in st.cps.items()},
                    "subPeakA": peak(st), "ratingA": RATING_A,
                    "overRatingS": round(sub["overRatingS"], 2),
                    "trips": len(state["trips"])}  # fmt: skip


def _med(xs: list[float | None]) -> float | None:
    v = [x for x in xs if x is not None]
    return round(statistics.median(v), 2) if v else None


def _max(xs: list[float | None]) -> float | None:
    v = [x for x in xs if x is not None]
    return round(max(v), 2) if v else None


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for version in dict.fromkeys(r["version"] for r in runs):
        for triggers in (True, False):
            rs = [r for r in runs if r["version"] == version and r["triggers"] == triggers]
            if not rs:
                continue
            row: dict[str, Any] = {"version": version, "triggers": triggers, "runs": len(rs)}
            for k in ("sampleS", "heldS", "releasedS", "capS", "increaseS"):
                xs = [r[k] for r in rs]
                row[k] = {"median": _med(xs), "max": _max(xs),
                          "missing": sum(1 for x in xs if x is None)}
            row["triggerMessages"] = {"median": statistics.median(
                sum(r["triggerMessages"].values()) for r in rs),
                "max": max(sum(r["triggerMessages"].values()) for r in rs)}
            row["hiddenAtPause"] = sum(1 for r in rs if r["hiddenAtPause"])
            row["subPeakA"] = max(max(r["subPeakA"]) for r in rs)
            row["overRatingS"] = max(r["overRatingS"] for r in rs)
            row["trips"] = sum(r["trips"] for r in rs)
            rows.append(row)
    return rows


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _cell(x: dict[str, Any]) -> str:
    miss = f" ({x['missing']} none)" if x["missing"] else ""
    return f"{_s(x['median'])} / {_s(x['max'])}{miss}"


def table(rows: list[dict[str, Any]], pause_s: float) -> str:
    head = ["version", "triggers", "runs", "hidden", "CP1 sample s", "held s", "released s",
            "CP1 capped s",
            "CP2 increase s", "TriggerMessages", "sub peak A", "over rating s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        tm = r["triggerMessages"]
        lines.append("| " + " | ".join([
            r["version"], "answered" if r["triggers"] else "refused", str(r["runs"]),
            str(r["hiddenAtPause"]),
            _cell(r["sampleS"]), _cell(r["heldS"]), _cell(r["releasedS"]), _cell(r["capS"]),
            _cell(r["increaseS"]),
            f"{tm['median']:g} / {tm['max']:g}", f"{r['subPeakA']:.2f}",
            f"{r['overRatingS']:.2f}"]) + " |")
    lines.append(f"Median / max over runs, simulated s from CP1's EV pausing ({pause_s:g} s) "
                 f"with {METER_S} s meter values; '-' or 'none': not within the pause.")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="repetitions per version and mode")
    ap.add_argument("--versions", default="1.6,2.0.1")
    ap.add_argument("--pause-s", type=float, default=PAUSE_S)
    ap.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    args = ap.parse_args()
    versions = [v.strip() for v in args.versions.split(",") if v.strip()]
    if not versions or any(v not in ("1.6", "2.0.1") for v in versions):
        ap.error("--versions: 1.6 and/or 2.0.1, comma-separated")
    if not 1 <= args.runs <= 50 or not 1.0 <= args.pause_s <= 120.0:
        ap.error("--runs 1..50, --pause-s 1..120")
    runs = []
    for i in range(args.runs):
        for version in versions:
            for triggers in ((True, False) if i % 2 == 0 else (False, True)):
                r = asyncio.run(run_case(version, triggers, args.pause_s, AGES_S[i % len(AGES_S)]))
                print(json.dumps(r), file=sys.stderr, flush=True)
                runs.append(r)
    rows = summarise(runs)
    if args.json:
        print(json.dumps({"rows": rows, "runs": runs, "meterIntervalS": METER_S,
                          "pauseS": args.pause_s}))
        return 0
    print(table(rows, args.pause_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
