"""The control loop drives simulated OCPP charge points (1.6J and 2.0.1) through
SetChargingProfile; what is measured is the simulator's physics, not the agent's report."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from ocpp_station import ocpp_station

pytestmark = pytest.mark.timeout(240)

ELECTRA = {"stationId": "EL1", "gridCapacity": 330.0, "chargers": [
    {"id": "CPA", "maxPower": 200.0, "connectors": 2, "kind": "dc"},
    {"id": "CPB", "maxPower": 200.0, "connectors": 1, "kind": "dc"},
]}  # fmt: skip
# The cap tracker finds the 80 kW EV's own maximum from what it draws (1.6 has no field
# for it): a tight probe margin so that the freed power lands where Electra's example says.
CONTROL = {"headroom_margin_kw": 0.0, "probe_margin_kw": 0.3, "probe_margin_fraction": 0.0,
           "cap_after_s": 1.0, "deadband_kw": 0.2, "comm_timeout_s": 10}


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_electra_example_converges_through_set_charging_profile(tmp_path, version):
    asyncio.run(_electra(tmp_path, version))


async def _electra(tmp_path, version):
    versions = {"CPA": version, "CPB": version}
    async with ocpp_station(tmp_path, ELECTRA, versions, control=CONTROL,
                            ocpp={"min_interval_s": 0.5}) as st:
        assert await st.until(lambda: all(c.ready for c in st.cs.chargers.values()))
        st.run()
        await st.cps["CPA"].plug(1, max_kw=80.0, id_tag="VAN-A1")
        await st.cps["CPA"].plug(2, max_kw=150.0, id_tag="VAN-A2")
        await st.cps["CPB"].plug(1, max_kw=150.0, id_tag="VAN-B1")

        def converged() -> bool:
            got = (st.power("CPA", 1), st.power("CPA", 2), st.power("CPB", 1))
            return all(abs(g - w) <= 1.0 for g, w in zip(got, (80.0, 120.0, 130.0), strict=False))

        # 10-46 s measured (a busy machine at the top): the charge points' meter values are
        # up to a second older than the grid meter's, which inflates the measured base load
        # while EVs ramp and holds the shares back (docs/ocpp.md, "Meter values and the grid
        # meter"); the deadline is generous, the test is about where it converges.
        assert await st.until(converged, timeout=150), (
            st.power("CPA", 1), st.power("CPA", 2), st.power("CPB", 1))
        # It went through profiles: the simulator applies TxProfiles of the transactions.
        for cp in st.cps.values():
            assert any(p.purpose == "TxProfile" for p in cp.store.profiles)
        # Each transaction's id tag is its session's vehicle id in the store, where vehicle
        # schedules and V2G permissions by vehicle look it up (and MQTT session messages).
        def tags() -> dict:
            with sqlite3.connect(tmp_path / "agent.db") as db:
                return {(c, i): v for c, i, v in db.execute(
                    "SELECT charger_id, connector_idx, vehicle_id FROM sessions"
                    " WHERE status = 'active'")}
        want = {("CPA", 1): "VAN-A1", ("CPA", 2): "VAN-A2", ("CPB", 1): "VAN-B1"}
        assert await st.until(lambda: tags() == want), tags()
        assert not st.sim.overload_episodes(0.02) or all(
            d <= 1.0 for _, d, _ in st.sim.overload_episodes(0.02))
