"""A connector without a profile of its own has no limit of its own: its composite schedule
is the charger-wide max profile alone. So until every connector's own profile is accepted,
the agent's max profile stands at the charger's fallback, not its rating: an EV plugged in
before then (early in the set-up of a charger that never had a profile, or at any time on a
charger that refuses connector profiles altogether, as here) draws at most the fallback,
and all fallbacks together fit the station. Measured on the simulator's meter. (Before
this, both EVs drew up to their chargers' 50 kW: 100 kW on a 60 kW connection.)"""

from __future__ import annotations

import asyncio

import pytest
from ocpp_station import ocpp_station

pytestmark = pytest.mark.timeout(120)

STATION = {"stationId": "SU1", "gridCapacity": 60.0, "chargers": [
    {"id": "DC1", "maxPower": 50.0, "connectors": 1, "kind": "dc"},
    {"id": "DC2", "maxPower": 50.0, "connectors": 1, "kind": "dc"},
]}  # fmt: skip
BASE_KW = 10.0


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_evs_on_connectors_without_their_own_profile_draw_at_most_the_fallback(tmp_path, version):
    asyncio.run(_without_own_profiles(tmp_path, version))


async def _without_own_profiles(tmp_path, version):
    versions = dict.fromkeys(("DC1", "DC2"), version)
    async with ocpp_station(tmp_path, STATION, versions, base_load_kw=BASE_KW,
                            faults=dict.fromkeys(versions, "reject-tx")) as st:
        chargers = st.cs.chargers
        st.run()
        # Set up, the fallbacks sized by the loop and in the max profiles the chargers hold.
        assert await st.until(lambda: all(
            c.ready and c.max.fallback_kw > 0 and not c.max.dirty and c.max.answer == "Accepted"
            for c in chargers.values())), {cid: c.describe()["maxProfile"]
                                           for cid, c in chargers.items()}
        await asyncio.sleep(1.0)  # the chargers apply it (the simulated DC reacts in 0.5 s)
        for cid in versions:
            await st.cps[cid].plug(1, max_kw=50.0)
        start = st.sim.model.t
        await asyncio.sleep(5.0)  # the EVs ramp up to whatever the chargers allow

        fallbacks = {cid: c.max.fallback_kw for cid, c in chargers.items()}
        assert sum(fallbacks.values()) <= STATION["gridCapacity"] - 15.0 + 1e-6
        for cid, c in chargers.items():
            assert not c.max.opened  # its connector refused every profile of its own
            assert st.power(cid, 1) <= fallbacks[cid] + 0.05, (cid, st.power(cid, 1), fallbacks)
            assert st.power(cid, 1) > 1.0  # charging, at the fallback
        peak = max(kw for t, kw in st.sim.model.history if t >= start)
        assert peak <= STATION["gridCapacity"], peak
