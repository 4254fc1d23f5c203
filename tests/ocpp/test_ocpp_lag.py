"""OCPP chargers lowered by the pause rotation stay within a metered sub-board's fuse and the
grid capacity, 1.6J and 2.0.1, over loopback sockets against the simulator (docs/ocpp.md,
"What a real charger may do differently"; agent/control/limit_lag.py).

An OCPP charger's draw is its last meter value, taken up to a sample interval before the
agent reads it. A lowered limit shows in it only later, so the lag must not believe the
decrease before a sample taken after it (or follow_s plus the sample interval), and a
stopped EV's stale sample must not make the base load read low.

Sub-board: 32 A with 5 kW of other load (8.7 A on L1, 6.5 A on L2 and L3) feeds CP1, a
3-phase charger, and CP2, CP4, CP5 and CP6, 1-phase chargers on grid L2. Five EVs need 6 A
each on L2, 25.5 A is left: one is paused at a time, and `max_pause_s` = 4 s rotates the
pause, moving a limit down and another up every few seconds. Phase switching is off and
`limit_follow_s` at its default. Grid: five 3-phase EVs on 20 kW with 5 kW of base load, three
fit at their minimum, the pause rotates the same way. Everything asserted is measured on the
simulator's side (its breaker model, its grid import), over a bounded run, never a timing.
"""

from __future__ import annotations

import asyncio

import pytest
from ocpp_station import OcppStation, metered_sub_board, ocpp_station

pytestmark = pytest.mark.timeout(300)

RATING_A = 32.0
WATCH_S = 60.0  # how long the rotation runs after the squeeze (loop time, bounded)
CONTROL = {"comm_timeout_s": 10, "max_pause_s": 4.0}  # limit_follow_s: the default
ONE_PHASE = {"kind": "ac", "circuit": "sub", "phases": 1, "phaseRotation": "L2L3L1"}
ONES = ("CP2", "CP4", "CP5", "CP6")
SUB_STATION = {
    "stationId": "OC1",
    "gridCapacity": 60.0,
    "circuits": [{"id": "sub", "maxCurrent": RATING_A, "meter": True, "baseLoad": 5.0}],
    "chargers": [
        {"id": "CP1", "maxPower": 11.0, "kind": "ac", "circuit": "sub"},
        *({"id": cid, "maxPower": 7.4, **ONE_PHASE} for cid in ONES),
    ],
}  # fmt: skip
GRID_KW = 20.0
GRID_STATION = {
    "stationId": "OC2",
    "gridCapacity": GRID_KW,
    "chargers": [{"id": f"CP{i}", "maxPower": 11.0} for i in range(1, 6)],
}


def _sub_settings(cfg: dict, sim) -> None:
    metered_sub_board(cfg, sim, SUB_STATION, RATING_A)


async def _ready(st: OcppStation) -> None:
    assert await st.until(lambda: all(c.ready for c in st.cs.chargers.values()), 30)
    st.run()
    # Every connector under the agent's first profile (0) in the simulator: before that a
    # charger new to the agent draws as it likes (docs/ocpp.md, "First connection").
    assert await st.until(lambda: all(c["limit"] == 0.0 for c in st.sim.state()["connectors"]),
                          30), st.sim.state()["connectors"]


async def _watch(st: OcppStation) -> set[str]:
    """Run the rotation for WATCH_S; return the chargers seen paused (drawing < 0.3 kW)."""
    paused: set[str] = set()
    for _ in range(int(WATCH_S / 0.5)):
        await asyncio.sleep(0.5)
        paused |= {c["chargerId"] for c in st.sim.state()["connectors"] if c["power"] < 0.3}
    return paused


async def _sub_run(tmp_path, version: str) -> dict:
    versions = {c["id"]: version for c in SUB_STATION["chargers"]}
    each = {cid: {"phases": 1} for cid in ONES}
    async with ocpp_station(tmp_path, SUB_STATION, versions, control=CONTROL,
                            ocpp={"min_interval_s": 0.5}, base_load_kw=5.0,
                            pessimistic_base_kw=10.0, each_charger=each,
                            settings=_sub_settings) as st:
        await _ready(st)
        for cid in ONES:
            await st.cps[cid].plug(1, max_kw=7.4, capacity_kwh=60.0, energy_needed_kwh=40.0,
                                   id_tag=f"EV-{cid}", phases=1)
        assert await st.until(lambda: all(st.power(cid, 1) >= 1.3 for cid in ONES), 60), \
            st.sim.state()["connectors"]
        await st.cps["CP1"].plug(1, max_kw=11.0, capacity_kwh=60.0, energy_needed_kwh=40.0)
        paused = await _watch(st)
        state = st.sim.state()
        return {"sub": state["circuits"]["sub"], "trips": state["trips"], "paused": paused,
                "grid_peak": max(kw for _, kw in st.sim.grid_history)}


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_the_pause_rotation_over_ocpp_keeps_a_metered_sub_board_within_its_rating(
        tmp_path, version):
    r = asyncio.run(_sub_run(tmp_path, version))
    summary = (f"{version}: sub-board peak {[round(a, 2) for a in r['sub']['peakCurrent']]} A "
               f"(rating {RATING_A:g}), over rating {r['sub']['overRatingS']:.1f} s, paused in "
               f"turn {sorted(r['paused'])}, grid peak {r['grid_peak']:.2f} kW")
    print(summary)
    assert len(r["paused"]) >= 2, summary  # the rotation ran: the squeeze was exercised
    assert not r["trips"], summary
    assert max(r["sub"]["peakCurrent"]) <= RATING_A, summary
    assert r["sub"]["overRatingS"] == 0.0, summary


async def _grid_run(tmp_path, version: str) -> dict:
    versions = {c["id"]: version for c in GRID_STATION["chargers"]}
    async with ocpp_station(tmp_path, GRID_STATION, versions, control=CONTROL,
                            ocpp={"min_interval_s": 0.5}, base_load_kw=5.0,
                            pessimistic_base_kw=10.0) as st:
        await _ready(st)
        for cid in st.cps:
            await st.cps[cid].plug(1, max_kw=11.0, capacity_kwh=60.0, energy_needed_kwh=40.0,
                                   id_tag=f"EV-{cid}")
        assert await st.until(lambda: sum(st.power(cid, 1) >= 4.0 for cid in st.cps) >= 2,
                              60), st.sim.state()["connectors"]
        paused = await _watch(st)
        state = st.sim.state()
        return {"trips": state["trips"], "paused": paused,
                "grid_peak": max(kw for _, kw in st.sim.grid_history),
                "overloads": st.sim.overload_episodes()}


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_the_pause_rotation_over_ocpp_keeps_the_grid_within_its_capacity(tmp_path, version):
    r = asyncio.run(_grid_run(tmp_path, version))
    summary = (f"{version}: grid peak {r['grid_peak']:.2f} kW (capacity {GRID_KW:g}), "
               f"overloads {r['overloads']}, paused in turn {sorted(r['paused'])}")
    print(summary)
    assert len(r["paused"]) >= 2, summary
    assert r["grid_peak"] <= GRID_KW, summary
    assert not r["overloads"], summary
