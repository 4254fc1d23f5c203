"""Two EVs squeezed by a metered sub-board keep a steady share with 10 s meter values, 1.6J
and 2.0.1, over loopback sockets against the simulator.

The station of tests/ocpp/ev_pause_station.py: a 32 A sub-board with 5 kW of other load
feeds two 1-phase 7.4 kW chargers on its L2, each EV wanting more than half of what L2
leaves. The chargers send a meter value every 10 s. A sample taken while an EV was paused
still reads 0 kW once it has ramped up; subtracted from the sub-board meter, its draw then
reads as other load and the room falls below two minimums. Before agent/control/limit_lag.py
held a raised EV at its limit until a sample taken after it could follow (not just for
`limit_follow_s` plus the 1 s interval the control loop assumed), the allocator paused and
restarted both EVs every 5-20 s (docs/ocpp.md "Meter values and the grid meter").

Measured on the simulator's side, over a bounded window from both EVs first charging: the
quarter seconds in which either EV draws nothing, and the sub-board's current (its breaker
model), never over its rating. From the start, not after a settling time: on the code
before, the pair sometimes fell into a steady share after a few restarts (2.0.1: both at
0 kW 8 s after first charging, steady 2.8 kW each from 12 s on) and sometimes not (1.6J:
28 and 59 of the 160 quarter seconds after the settling time).
"""

from __future__ import annotations

import asyncio

import pytest
from ev_pause_station import RATING_A, squeezed_station

pytestmark = pytest.mark.timeout(300)

STEP_S = 0.25
STEPS = 192  # 48 s: the squeeze forming, then four meter intervals
ZERO_KW = 0.1  # an EV drawing less than this is stopped (the minimum is 1.38 kW)
# Measured (2026-12-07): 0 of 192 in 1.6J and 2.0.1; before, 86 (1.6J) and 21 (2.0.1).
MOST_STOPPED = 8  # quarter seconds: the squeeze forming may pause an EV once, briefly


async def _run(tmp_path, version: str, loop_knows: bool) -> dict:
    async with squeezed_station(tmp_path, version, meter_s=10, loop_knows_interval=loop_knows,
                                settle_s=0.0) as sq:
        st = sq.st
        stopped, kw, runs = 0, {"CP1": [], "CP2": []}, []
        for k in range(STEPS):
            now = {cid: st.power(cid, 1) for cid in ("CP1", "CP2")}
            stop = any(v < ZERO_KW for v in now.values())
            stopped += stop
            if stop and runs and runs[-1][0] + runs[-1][1] == k:
                runs[-1][1] += 1
            elif stop:
                runs.append([k, 1])  # a stop: its first step and its length
            for cid, v in now.items():
                kw[cid].append(v)
            await asyncio.sleep(STEP_S)
        state = st.sim.state()
        return {"stopped": stopped, "runs": runs, "sub": state["circuits"]["sub"], "trips": state["trips"],
                "squeezed": sq.squeezed, "settled": sq.settled,
                "mean": {cid: round(sum(v) / len(v), 2) for cid, v in kw.items()}}


# loop_knows: the control loop's [ocpp] meter_interval_s says 10 s as well (one [ocpp], as
# the daemon has); without it, 1 s: a charger that keeps a longer interval than the one asked.
@pytest.mark.parametrize(("version", "loop_knows"),
                         [("1.6", False), ("2.0.1", False), ("1.6", True)])
def test_two_squeezed_evs_keep_charging_with_10_s_meter_values(tmp_path, version, loop_knows):
    r = asyncio.run(_run(tmp_path, version, loop_knows))
    summary = (f"{version}, loop knows 10 s: {loop_knows}: either EV at 0 kW in "
               f"{r['stopped']} of {STEPS} quarter seconds (step, length: {r['runs']}); "
               f"mean {r['mean']} kW, settled {r['settled']} kW; sub-board peak "
               f"{[round(a, 2) for a in r['sub']['peakCurrent']]} A (rating {RATING_A:g}), "
               f"over rating {r['sub']['overRatingS']:.2f} s, trips {r['trips']}")
    print(summary)
    assert r["squeezed"], summary
    assert not r["trips"], summary
    assert max(r["sub"]["peakCurrent"]) <= RATING_A, summary
    assert r["sub"]["overRatingS"] == 0.0, summary
    assert r["stopped"] <= MOST_STOPPED, summary
