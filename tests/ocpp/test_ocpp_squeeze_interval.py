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

Measured on the simulator's side, over a bounded window after the squeeze settled: the
quarter seconds in which either EV draws nothing, and the sub-board's current (its breaker
model), never over its rating.
"""

from __future__ import annotations

import asyncio

import pytest
from ev_pause_station import RATING_A, squeezed_station

pytestmark = pytest.mark.timeout(300)

STEP_S = 0.25
STEPS = 160  # 40 s: four meter intervals
ZERO_KW = 0.1  # an EV drawing less than this is stopped (the minimum is 1.38 kW)
# Stop-and-go measured 40-70 of 160 before the fix. The squeeze settling late (an EV
# paused once as the other one's first share is cut) may cost a few steps, not more.
MOST_STOPPED = 12


async def _run(tmp_path, version: str) -> dict:
    async with squeezed_station(tmp_path, version, meter_s=10) as sq:
        st = sq.st
        stopped, kw = 0, {"CP1": [], "CP2": []}
        for _ in range(STEPS):
            now = {cid: st.power(cid, 1) for cid in ("CP1", "CP2")}
            stopped += any(v < ZERO_KW for v in now.values())
            for cid, v in now.items():
                kw[cid].append(v)
            await asyncio.sleep(STEP_S)
        state = st.sim.state()
        return {"stopped": stopped, "sub": state["circuits"]["sub"], "trips": state["trips"],
                "squeezed": sq.squeezed, "settled": sq.settled,
                "mean": {cid: round(sum(v) / len(v), 2) for cid, v in kw.items()}}


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_two_squeezed_evs_keep_charging_with_10_s_meter_values(tmp_path, version):
    r = asyncio.run(_run(tmp_path, version))
    summary = (f"{version}: either EV at 0 kW in {r['stopped']} of {STEPS} quarter seconds; "
               f"mean {r['mean']} kW, settled {r['settled']} kW; sub-board peak "
               f"{[round(a, 2) for a in r['sub']['peakCurrent']]} A (rating {RATING_A:g}), "
               f"over rating {r['sub']['overRatingS']:.2f} s, trips {r['trips']}")
    print(summary)
    assert r["squeezed"], summary
    assert not r["trips"], summary
    assert max(r["sub"]["peakCurrent"]) <= RATING_A, summary
    assert r["sub"]["overRatingS"] == 0.0, summary
    assert r["stopped"] <= MOST_STOPPED, summary
