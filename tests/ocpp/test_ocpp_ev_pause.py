"""An EV that pauses by itself behind its charger's stale meter value takes neither a metered
sub-board over its rating nor the grid over its capacity, 1.6J and 2.0.1, over loopback
sockets against the simulator.

An OCPP charger's draw is its last meter value, up to a sample interval old. An EV that
pauses by itself (its limit untouched: cell balancing, preconditioning) shows at once on the
meters while its sample still says it draws its limit: the base load read from them falls
by its draw, and that room was handed to the other EV. When the paused EV resumed under its
limit, the sub-board went over (37.3 A on 32 A for 3.2-3.4 s before
agent/control/unseen_drops.py; 35.5 A and 36.9 A in the phase switch test with CP1's EV
paused by hand for 1 s), and the grid likewise (17.9 kW on 17).

Sub-board: 32 A with 5 kW of other load (8.7 A on L1, 6.5 A on L2 and L3) feeds CP1 and CP2,
1-phase 7.4 kW chargers on grid L2 with 1-phase EVs: they share what L2 has left (about 12 A
each), and each wants more. Grid: 17 kW with 5 kW of base load feeds two 11 kW three-phase
chargers, no circuit: they share about 12 kW (the station: ev_pause_station.py, shared with
bench/ocpp_trigger.py). In each, CP1's EV then pauses by itself for
1.5 s, three times, 10 s apart (the simulator's `pause_ev`). Everything asserted is
measured on the simulator's side (its breaker model and grid meter), over a bounded run,
never a timing.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from ev_pause_station import GRID_KW, RATING_A, peak, squeezed_station

pytestmark = pytest.mark.timeout(300)

PAUSE_S = 1.5  # simulated s (time factor 1): the EV's own pause, under cap_after_s (3 s)
PAUSES = 3
# With 10 s meter values each pause starts behind a sample this old (s, as the agent holds
# it): past the agent's 2 s gap between a sample and a TriggerMessage (TRIGGER_GAP_S), and
# the 1.5 s pause over before the next periodic sample. Left to chance, three pauses 10.2-
# 10.5 s apart could all start just after a sample (no TriggerMessage: once in 4 runs) now
# that the squeeze no longer stops and goes by itself (docs/ocpp.md).
BEHIND_S = (2.5, 6.0)


async def _run(tmp_path, version: str, grid: bool = False, meter_s: int = 1,
               triggers: bool = True) -> dict:
    async with squeezed_station(tmp_path, version, grid, meter_s, triggers) as sq:
        st, low = sq.st, sq.low
        before = [] if grid else peak(st)
        grid_before = max(kw for _, kw in st.sim.grid_history)
        seen = []
        cp1 = st.cs.chargers["CP1"].conns[1]
        for _ in range(PAUSES):
            if meter_s > 1:  # behind a sample BEHIND_S old (within one meter interval)
                assert await st.until(
                    lambda: BEHIND_S[0] <= time.time() - (cp1.power_ts or 0.0) < BEHIND_S[1],
                    2.0 * meter_s, 0.05)
            st.sim.pause_ev("CP1", 1, PAUSE_S)
            # the pause happened: CP1 drew (almost) nothing at some point
            assert await st.until(lambda: st.power("CP1", 1) < 0.3, 10, 0.05), \
                st.sim.state()["connectors"]
            seen.append([] if grid else peak(st))
            await asyncio.sleep(10.0)
        resumed = {cid: round(st.power(cid, 1), 2) for cid in ("CP1", "CP2")}
        # CP1 charges again after its pauses (polled, as above)
        charges_again = await st.until(lambda: st.power("CP1", 1) >= low, 60)
        state = st.sim.state()
        return {"sub": state["circuits"].get("sub"), "trips": state["trips"],
                "settled": sq.settled, "resumed": resumed, "before": before,
                "grid_before": grid_before,
                "grid_peak": max(kw for _, kw in st.sim.grid_history),
                "triggered": {cid: cp.triggered for cid, cp in st.cps.items()},
                "charges_again": charges_again, "squeezed": sq.squeezed}


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_an_ev_pausing_by_itself_behind_a_stale_sample_keeps_the_sub_board_within_its_rating(
        tmp_path, version):
    r = asyncio.run(_run(tmp_path, version))
    summary = (f"{version}: sub-board peak {[round(a, 2) for a in r['sub']['peakCurrent']]} A "
               f"(rating {RATING_A:g}; before the pauses {r['before']}), over rating "
               f"{r['sub']['overRatingS']:.2f} s, trips {r['trips']}; settled {r['settled']} kW, "
               f"after the pauses {r['resumed']} kW; grid peak {r['grid_peak']:.2f} kW")
    print(summary)
    # the squeeze was exercised: both charged at once, each below its 7.4 kW (the sub-board)
    assert r["squeezed"], summary
    assert not r["trips"], summary
    assert max(r["sub"]["peakCurrent"]) <= RATING_A, summary
    assert r["sub"]["overRatingS"] == 0.0, summary
    # and CP1 charges again after its pauses
    assert r["charges_again"], summary


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_an_ev_pausing_by_itself_behind_a_stale_sample_keeps_the_grid_within_its_capacity(
        tmp_path, version):
    r = asyncio.run(_run(tmp_path, version, grid=True))
    summary = (f"{version}: grid peak {r['grid_peak']:.2f} kW (capacity {GRID_KW:g}; before "
               f"the pauses {r['grid_before']:.2f}); settled {r['settled']} kW, after the "
               f"pauses {r['resumed']} kW")
    print(summary)
    # the squeeze was exercised: both charged at once, each below its 11 kW (the grid binds)
    assert r["squeezed"], summary
    assert r["grid_peak"] <= GRID_KW, summary
    assert r["charges_again"], summary


# Meter values every 10 s, as many real chargers insist on: the fall stays held until CP1's
# next sample, which the agent asks for at once (TriggerMessage "MeterValues") where the
# charger takes it; one that refuses it is not asked again, and the fall waits for its
# periodic sample. Within the rating either way.
@pytest.mark.parametrize(("version", "triggers"), [("1.6", True), ("2.0.1", True), ("1.6", False)])
def test_with_slow_meter_values_the_agent_asks_for_a_sample_and_stays_within_the_rating(
        tmp_path, version, triggers):
    r = asyncio.run(_run(tmp_path, version, meter_s=10, triggers=triggers))
    summary = (f"{version}, triggers {triggers}: sub-board peak {r['sub']['peakCurrent']} A, "
               f"over rating {r['sub']['overRatingS']:.2f} s, trips {r['trips']}; settled "
               f"{r['settled']} kW, after {r['resumed']} kW; meter values on a trigger "
               f"{r['triggered']}")
    print(summary)
    assert max(r["sub"]["peakCurrent"]) >= 0.9 * RATING_A, summary  # the squeeze: L2 full
    assert not r["trips"], summary
    assert max(r["sub"]["peakCurrent"]) <= RATING_A, summary
    assert r["sub"]["overRatingS"] == 0.0, summary
    assert r["charges_again"], summary
    if triggers:  # asked for and sent; a refusing charger sent none
        assert r["triggered"]["CP1"] > 0, summary
    else:
        assert sum(r["triggered"].values()) == 0, summary
