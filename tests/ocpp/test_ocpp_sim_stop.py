"""The simulated charge point's stop() ends it even when the cancel is lost.

Python 3.11's `asyncio.wait_for`, which the `ocpp` library's `call()` waits for an answer
with, returns the answer instead of raising when a cancel lands after the answer arrived and
before the waiting task resumed (CPython gh-86296, fixed in 3.12). A charge point stopped in
that instant kept its tick task running, and the stop awaited it for ever: the OCPP lag
test's one 300 s timeout in a parallel run (a loaded event loop widens the instant;
docs/testing.md, "In parallel"). Here the stop is started in exactly that instant, against
the agent's real central system: the answer to the charge point's own call has just been
routed to it.
"""

from __future__ import annotations

import asyncio

import pytest
from ocpp_station import ocpp_station

STATION = {"stationId": "ST1", "gridCapacity": 60.0,
           "chargers": [{"id": "CP1", "maxPower": 11.0}]}  # fmt: skip
WAIT_S = 30.0  # bounded waits, far above what each takes (answers come every second)


async def _stop_right_after_an_answer(tmp_path, version: str) -> None:
    async with ocpp_station(tmp_path, STATION, {"CP1": version}, with_loop=False) as st:
        cp = st.cps["CP1"]
        assert await st.until(lambda: cp.connected.is_set() and st.cs.chargers["CP1"].ready,
                              WAIT_S), "CP1 never connected and set up"
        await cp.plug(1, max_kw=11.0, capacity_kwh=60.0, energy_needed_kwh=40.0)
        tasks = list(cp._tasks)
        loop = asyncio.get_running_loop()
        stopping: asyncio.Future[asyncio.Task[None]] = loop.create_future()
        link = cp.cp
        route = link.route_message

        async def route_then_stop(raw: str) -> None:
            await route(raw)  # the answer reaches the call waiting for it...
            if raw.startswith("[3") and not stopping.done():  # ...and stop() starts now
                stopping.set_result(loop.create_task(cp.stop()))

        link.route_message = route_then_stop  # the charge point's own call: its tick's
        stop = await asyncio.wait_for(stopping, WAIT_S)
        done, _ = await asyncio.wait({stop}, timeout=WAIT_S)
        running = [t for t in tasks if not t.done()]
        assert done, f"stop() still waiting after {WAIT_S:g} s; running: {running}"
        stop.result()
        assert not running, running


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_a_charge_point_stopped_right_after_an_answer_stops(tmp_path, version):
    asyncio.run(_stop_right_after_an_answer(tmp_path, version))
