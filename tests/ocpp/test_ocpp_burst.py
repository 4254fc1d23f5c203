"""Bursts of profile changes (agent/ocpp/pacing.py): when an EV arrives at a full station
every other charger's limit goes down in the same cycle, when it leaves they all go up.
Checked cycle by cycle on the real control loop against simulated 1.6J and 2.0.1 charge
points: every decrease a cycle decides has gone out on its charger's socket before the next
cycle starts; increases beyond `increases_per_cycle` wait for later cycles and still arrive;
and the simulator's grid import stays within capacity throughout."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from ocpp_station import ocpp_station

from agent.ocpp.rates import to_rate
from tests.faults.harness import capacity_violations

pytestmark = pytest.mark.timeout(300)

N_SHARING = 16  # chargers with an EV throughout
N_SPARE = 2  # where EVs arrive and leave
CAPACITY_KW = 160.0
STATION = {"stationId": "BU1", "gridCapacity": CAPACITY_KW, "chargers": [
    {"id": f"CP{i + 1}", "maxPower": 50.0, "connectors": 1, "kind": "dc"}
    for i in range(N_SHARING + N_SPARE)
]}  # fmt: skip
VERSIONS = {c["id"]: ("1.6" if i % 2 == 0 else "2.0.1") for i, c in enumerate(STATION["chargers"])}
INCREASES_PER_CYCLE = 4  # well below a burst's 16: deferral is exercised


def _limit_frames(charger: Any, since: float) -> list[tuple[int, float]]:
    """(connector, limit) of the SetChargingProfile frames the agent wrote to `charger`'s
    socket since `since` (wall clock), connector 0 (the max profile) left out."""
    out = []
    for entry in charger.traffic.log:
        if entry["dir"] != "out" or entry["ts"] < since:
            continue
        frame = json.loads(entry["msg"])
        if frame[0] != 2 or frame[2] != "SetChargingProfile":
            continue
        payload = frame[3]
        idx = payload.get("connectorId", payload.get("evseId"))
        profile = payload.get("csChargingProfiles") or payload["chargingProfile"]
        schedule = profile["chargingSchedule"]
        schedule = schedule[0] if isinstance(schedule, list) else schedule
        if idx:
            out.append((idx, float(schedule["chargingSchedulePeriod"][0]["limit"])))
    return out


def test_a_burst_sends_every_decrease_in_its_cycle_and_stays_within_capacity(tmp_path):
    asyncio.run(_burst(tmp_path))


async def _burst(tmp_path):
    async with ocpp_station(tmp_path, STATION, VERSIONS, base_load_kw=5.0,
                            pessimistic_base_kw=10.0,
                            ocpp={"increases_per_cycle": INCREASES_PER_CYCLE}) as st:
        chargers = st.cs.chargers
        assert await st.until(lambda: all(c.ready for c in chargers.values()), timeout=60)
        loop = st.loop
        assert loop is not None
        # Around each cycle: the decreases it decided (those that need a frame: the
        # charger not already at that rate, and no call of its own outstanding, which OCPP
        # makes the next call wait for), checked when the next cycle starts.
        pending: list[tuple[str, int, float, float]] = []  # (charger, connector, rate, at)
        checked = skipped = 0
        late: list[str] = []
        cycle = loop.cycle

        async def traced_cycle() -> Any:
            nonlocal checked, pending, skipped
            for cid, idx, rate, at in pending:
                checked += 1
                if (idx, rate) not in _limit_frames(chargers[cid], at):
                    late.append(f"{cid}/{idx} -> {rate}")
            pending = []
            decided = await cycle()
            at = time.time()
            for w in decided.plan.writes:
                if w.reason != "decrease":
                    continue
                ch = chargers[w.charger_id]
                c = ch.conns[w.idx]
                rate = to_rate(ch._capped(w.idx, w.kw), ch.info.unit, ch.cfg)
                busy = ch.link is None or ch.link._call_lock.locked()
                if (c.tx_id, rate, c.phases.want) == c.sent_key or busy:
                    skipped += 1
                    continue
                pending.append((w.charger_id, w.idx, rate, at))
            return decided

        loop.cycle = traced_cycle  # type: ignore[method-assign]
        st.run()
        for i in range(N_SHARING):
            await st.cps[f"CP{i + 1}"].plug(1, max_kw=22.0)
        # Shared out: 16 EVs of 22 kW on 160 kW minus the base load.
        assert await st.until(lambda: st.sim.model.meter.total_kw > 0.8 * CAPACITY_KW,
                              timeout=60), st.sim.model.meter.total_kw
        # The grid promise is judged from here: EVs plugged in the agent's first second draw
        # their maximum until their first TxProfile (on main as well; docs/ocpp.md), which is
        # start-up, not bursts.
        sharing = [chargers[f"CP{i + 1}"].conns[1] for i in range(N_SHARING)]
        assert await st.until(lambda: all(c.tx_id is not None and c.sent_key is not None
                                          and c.sent_key[0] == c.tx_id for c in sharing))
        await asyncio.sleep(2.0)  # their EVs follow the first profiles
        t_settled = st.sim.model.t
        spares = [f"CP{N_SHARING + i + 1}" for i in range(N_SPARE)]
        deferred0 = st.cs.pacer.deferred
        for _ in range(4):
            # EVs arrive: every sharing charger's limit goes down, in one cycle.
            for cid in spares:
                await st.cps[cid].plug(1, max_kw=50.0)
            assert await st.until(lambda: all(st.power(cid, 1) > 5.0 for cid in spares),
                                  timeout=30), [st.power(cid, 1) for cid in spares]
            # They leave: every sharing charger's limit goes up, a few per cycle.
            for cid in spares:
                await st.cps[cid].unplug(1)
            await asyncio.sleep(3.0)

        def converged() -> bool:  # every increase arrived in the end
            return all(c.conns[1].accepted is not None and c.conns[1].want is not None
                       and c.conns[1].in_flight is None
                       and to_rate(c._capped(1, c.conns[1].want), c.info.unit, c.cfg)
                       == (c.conns[1].sent_key or (None, None))[1]
                       for c in chargers.values())

        assert await st.until(converged, timeout=30), {
            cid: (c.conns[1].want, c.conns[1].accepted) for cid, c in chargers.items()}

        assert not late, f"decreases not sent in their cycle ({len(late)}/{checked}): {late[:10]}"
        assert checked >= 4 * N_SHARING, (checked, skipped)  # the bursts really happened
        assert st.cs.pacer.deferred > deferred0  # increases were spread over cycles
        history = [(t, kw) for t, kw in st.sim.grid_history if t >= t_settled]
        assert len(history) > 100, len(history)
        problems = capacity_violations(history, [(float("-inf"), CAPACITY_KW)])
        assert not problems, "over capacity (simulator side): " + "; ".join(problems[:10])
