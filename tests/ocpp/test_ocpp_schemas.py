"""The agent skips the `ocpp` library's schema validation of the calls it builds itself
(agent/ocpp/link.py: a thread-pool round trip per call, most of a burst's send path). So
here every kind of call it sends, as it crossed the socket, is validated against the
library's own schemas (1.6J and 2.0.1): a wrong field still fails a test. And what comes
back from a charger is still validated: a malformed answer is not taken as accepted."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, _validate_payload
from ocpp_station import ocpp_station
from websockets.asyncio.client import connect

from agent.config.ocpp import OcppChargerConfig, OcppSettings
from agent.ocpp.charger import OcppCharger
from agent.ocpp.server import CentralSystem

pytestmark = pytest.mark.timeout(120)

STATION = {"stationId": "SCH1", "gridCapacity": 60.0, "chargers": [
    {"id": "DC16", "maxPower": 50.0, "connectors": 2, "kind": "dc"},
    {"id": "AC201", "maxPower": 22.0, "connectors": 2, "kind": "ac"},
]}  # fmt: skip
VERSIONS = {"DC16": "1.6", "AC201": "2.0.1"}
# Every kind of call the agent makes, per version (link16.py / link201.py).
SENT_KINDS = {
    "1.6": {"GetConfiguration", "ChangeConfiguration", "SetChargingProfile",
            "GetCompositeSchedule"},
    "2.0.1": {"GetVariables", "SetVariables", "SetChargingProfile", "GetCompositeSchedule"},
}  # fmt: skip


def _calls(charger: OcppCharger) -> list[Call]:
    """The agent's calls to `charger` as they went out on its socket."""
    out = []
    for entry in charger.traffic.log:
        frame = json.loads(entry["msg"])
        if entry["dir"] == "out" and frame[0] == 2:
            out.append(Call(unique_id=frame[1], action=frame[2], payload=frame[3]))
    return out


def test_every_call_the_agent_sends_passes_the_library_schemas(tmp_path):
    asyncio.run(_every_call(tmp_path))


async def _every_call(tmp_path):
    async with ocpp_station(tmp_path, STATION, VERSIONS, ocpp={"min_interval_s": 0.2},
                            pessimistic_base_kw=5.0) as st:
        chargers = st.cs.chargers
        assert await st.until(lambda: all(c.ready for c in chargers.values()))
        st.run()
        # Transactions on one connector of each: TxProfiles there, TxDefaultProfiles on the
        # idle ones, both purposes' payloads on the wire.
        await st.cps["DC16"].plug(1, max_kw=50.0)
        await st.cps["AC201"].plug(1, max_kw=22.0)

        def profiled() -> bool:
            return all(c.conns[1].tx_id is not None and c.conns[1].sent_key is not None
                       and c.conns[1].sent_key[0] == c.conns[1].tx_id for c in chargers.values())

        assert await st.until(profiled, timeout=30)
        for cid, charger in chargers.items():
            version = VERSIONS[cid]
            calls = _calls(charger)
            assert {c.action for c in calls} >= SENT_KINDS[version], (cid, calls)
            purposes = set()
            for c in calls:
                _validate_payload(c, version)  # raises an OCPPError on a wrong field
                if c.action == "SetChargingProfile":
                    profile = c.payload.get("csChargingProfiles") or c.payload["chargingProfile"]
                    purposes.add(profile["chargingProfilePurpose"])
            assert {"TxProfile", "TxDefaultProfile"} <= purposes, (cid, purposes)
            assert purposes & {"ChargePointMaxProfile", "ChargingStationMaxProfile"}, purposes

            # The check can fail: the same profile with a wrong field is refused.
            # (from a fresh copy: the library's validation turns floats into Decimals)
            bad = next(c for c in _calls(charger) if c.action == "SetChargingProfile")
            wrong = bad.payload
            profile = wrong.get("csChargingProfiles") or wrong["chargingProfile"]
            schedule = profile["chargingSchedule"]  # 2.0.1: a list of schedules
            (schedule[0] if isinstance(schedule, list) else schedule)["chargingRateUnit"] = "kW"
            with pytest.raises(OCPPError):
                _validate_payload(Call(bad.unique_id, bad.action, wrong), version)


def test_a_malformed_answer_from_the_charger_is_not_taken_as_accepted(tmp_path):
    asyncio.run(_malformed_answer())


async def _malformed_answer():
    settings = OcppSettings(host="127.0.0.1", port=0, min_interval_s=0.0, call_timeout_s=2.0)
    cfg = OcppChargerConfig(charge_point_id="CP1", max_power_kw=22.0, connectors=1,
                            rate_unit="A")
    charger = OcppCharger("CP1", cfg, settings)
    cs = CentralSystem(settings, {"CP1": charger})
    await cs.start()
    answers = {"ChangeConfiguration": {"status": "Accepted"},
               "GetCompositeSchedule": {"status": "Rejected"}}
    try:
        # A bare charge point over a real socket, answering the agent's calls by hand.
        async with connect(f"ws://127.0.0.1:{cs.port}/ocpp/CP1",
                           subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps([2, "boot", "BootNotification", {
                "chargePointVendor": "V", "chargePointModel": "M"}]))

            async def answer_calls() -> None:
                async for raw in ws:
                    frame = json.loads(raw)
                    if frame[0] != 2:
                        continue
                    action, payload = frame[2], frame[3]
                    if action == "SetChargingProfile":
                        # The max profile is accepted, a connector's limit answered with a
                        # status the schema does not know.
                        ok = payload["connectorId"] == 0
                        body = {"status": "Accepted" if ok else "Maybe"}
                    else:
                        body = answers[action]
                    await ws.send(json.dumps([3, frame[1], body]))

            server = asyncio.get_running_loop().create_task(answer_calls())
            try:
                for _ in range(100):
                    if charger.ready:
                        break
                    await asyncio.sleep(0.05)
                assert charger.ready
                await charger.set_limit(1, 10.0)
                for _ in range(100):
                    if charger.conns[1].last_answer is not None:
                        break
                    await asyncio.sleep(0.05)
                c = charger.conns[1]
                assert c.last_answer is not None and c.last_answer.startswith("error"), c
                assert c.accepted is None  # never counted at the malformed "limit"
                assert charger.traffic.errors >= 1
            finally:
                server.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await server
    finally:
        await cs.close()
