"""Two EVs squeezed behind a metered sub-board or the grid, over OCPP: the station of
tests/ocpp/test_ocpp_ev_pause.py, shared with bench/ocpp_trigger.py (which measures what
TriggerMessage buys in the same scenario).

Sub-board: 32 A with 5 kW of other load (8.7 A on L1, 6.5 A on L2 and L3) feeds CP1 and CP2,
1-phase 7.4 kW chargers on grid L2 with 1-phase EVs: they share what L2 has left (about 12 A
each), and each wants more. Grid: 17 kW with 5 kW of base load feeds two 11 kW three-phase
chargers, no circuit: they share about 12 kW.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from ocpp_station import OcppStation, metered_sub_board, ocpp_station

RATING_A = 32.0
CONTROL = {"comm_timeout_s": 10}  # limit_follow_s: the default
ONE_PHASE = {"kind": "ac", "circuit": "sub", "phases": 1, "phaseRotation": "L2L3L1"}
STATION = {
    "stationId": "OC1",
    "gridCapacity": 60.0,
    "circuits": [{"id": "sub", "maxCurrent": RATING_A, "meter": True, "baseLoad": 5.0}],
    "chargers": [{"id": cid, "maxPower": 7.4, **ONE_PHASE} for cid in ("CP1", "CP2")],
}  # fmt: skip
GRID_KW = 17.0
GRID_STATION = {
    "stationId": "OC2",
    "gridCapacity": GRID_KW,
    "chargers": [{"id": cid, "maxPower": 11.0, "kind": "ac"} for cid in ("CP1", "CP2")],
}  # fmt: skip
BASE_LOAD_KW = 5.0


def peak(st: OcppStation) -> list[float]:
    """The sub-board's peak current per phase so far (A), the simulator's breaker model."""
    return [round(a, 2) for a in st.sim.state()["circuits"]["sub"]["peakCurrent"]]


@dataclass
class Squeezed:
    st: OcppStation
    grid: bool
    settled: dict[str, float]  # kW per charger `settle_s` after both charged
    squeezed: bool  # both charged below their maximum at once (polled)
    low: float  # kW: a charging EV draws at least this in the squeeze ...
    high: float  # ... and less than this
    extra: dict[str, object] = field(default_factory=dict)


def _settings(cfg: dict, sim) -> None:
    metered_sub_board(cfg, sim, STATION, RATING_A)


@contextlib.asynccontextmanager
async def squeezed_station(tmp_path: Path, version: str, grid: bool = False, meter_s: int = 1,
                           triggers: bool = True,
                           loop_knows_interval: bool = False,
                           settle_s: float = 8.0) -> AsyncIterator[Squeezed]:
    """The station with its control loop running, both EVs plugged and charging, settled and
    squeezed (asserted: their chargers ready, both charging). `meter_s`: the meter value
    interval the agent asks; `triggers`: whether the charge points answer TriggerMessage
    "MeterValues" (False: they refuse it, as a charger without 1.6's RemoteTrigger);
    `loop_knows_interval`: the control loop's [ocpp] says `meter_s` too (False: it says the
    default 1 s, as for a charger that keeps a longer interval than the one asked);
    `settle_s`: waited after both first charged, before `settled` is read."""
    station = GRID_STATION if grid else STATION
    versions = {c["id"]: version for c in station["chargers"]}
    ev_kw, phases = (11.0, 3) if grid else (7.4, 1)
    sub_board = {} if grid else {
        "settings": _settings, "each_charger": {cid: {"phases": 1} for cid in ("CP1", "CP2")}}
    async with ocpp_station(tmp_path, station, versions, control=CONTROL,
                            ocpp={"min_interval_s": 0.5, "meter_interval_s": meter_s},
                            base_load_kw=BASE_LOAD_KW, pessimistic_base_kw=10.0,
                            charge_points={cid: {"triggers": triggers} for cid in versions},
                            loop_knows_ocpp=loop_knows_interval,
                            **sub_board) as st:
        assert await st.until(lambda: all(c.ready for c in st.cs.chargers.values()), 30)
        st.run()
        assert await st.until(lambda: all(c["limit"] == 0.0
                                          for c in st.sim.state()["connectors"]), 30)
        for cid in ("CP1", "CP2"):
            await st.cps[cid].plug(1, max_kw=ev_kw, capacity_kwh=80.0, energy_needed_kwh=60.0,
                                   id_tag=f"EV-{cid}", phases=phases)
        assert await st.until(lambda: all(st.power(cid, 1) >= 1.3 for cid in ("CP1", "CP2")),
                              60), st.sim.state()["connectors"]
        await asyncio.sleep(settle_s)  # settled: both held by the sub-board or the grid
        settled = {cid: round(st.power(cid, 1), 2) for cid in ("CP1", "CP2")}
        # the squeeze: both charging below their maximum at once (polled: two EVs at their
        # shares still go to 0 and back now and then, so one instant says little)
        low, high = (3.0, 10.0) if grid else (1.3, 7.0)
        squeezed = await st.until(
            lambda: all(low <= st.power(cid, 1) < high for cid in ("CP1", "CP2")), 30)
        yield Squeezed(st, grid, settled, squeezed, low, high)
