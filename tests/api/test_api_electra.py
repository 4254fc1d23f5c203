"""Electra's endpoints through the real Unix socket, with status codes and the convergence rule."""

from __future__ import annotations

import pytest

import allocator
from api.conftest import ELECTRA
from api.live import LiveApi

SESSION_KEYS = {"sessionId", "connectorId", "allocatedPower", "vehicleMaxPower"}


def start(live, charger: str, idx: int, vmax: float) -> dict:
    r = live.http.post("/sessions", json={"connectorId": {"chargerId": charger, "idx": idx}, "vehicleMaxPower": vmax})
    assert r.status_code == 200, r.text
    session = r.json()["session"]
    assert set(session) == SESSION_KEYS
    return session


def status(live) -> dict[str, dict]:
    r = live.http.get("/station/status")
    assert r.status_code == 200
    return r.json()["sessions"]


def test_health_and_config(live):
    assert live.http.get("/health").json() == {"status": "ok"}
    assert live.http.get("/station/config").json() == {**ELECTRA, "baseLoad": None}


def test_electra_example_converges_to_80_120_130(live):
    a = start(live, "CP001", 1, 80)
    b = start(live, "CP001", 2, 150)
    c = start(live, "CP002", 1, 150)
    live.wait_cycles(2)
    got = {k: v["allocatedPower"] for k, v in status(live).items()}
    assert got == {a["sessionId"]: 80, b["sessionId"]: 120, c["sessionId"]: 130}


def test_new_session_gets_only_free_headroom_then_fair_share_within_two_cycles(tmp_path):
    api = LiveApi(tmp_path, {"stationId": "S", "gridCapacity": 100,
                             "chargers": [{"id": "A", "maxPower": 100, "connectors": 1},
                                          {"id": "B", "maxPower": 100, "connectors": 1}]}, period_s=0.2).start()
    try:
        first = start(api, "A", 1, 100)
        assert first["allocatedPower"] == 100
        api.wait_cycles(1)
        second = start(api, "B", 1, 100)
        # The first still holds 100 kW at this instant: nothing is free for the newcomer.
        sessions = status(api)
        assert second["allocatedPower"] <= 100 - sessions[first["sessionId"]]["allocatedPower"] + 1e-9
        api.wait_cycles(2)
        got = {k: v["allocatedPower"] for k, v in status(api).items()}
        assert got == {first["sessionId"]: 50, second["sessionId"]: 50}
    finally:
        api.stop()


def test_sum_of_allocations_never_exceeds_capacity_across_arrivals(live):
    ids = []
    for charger, idx, vmax in [("CP001", 1, 150), ("CP002", 1, 150), ("CP001", 2, 150), ("CP002", 2, 150)]:
        ids.append(start(live, charger, idx, vmax)["sessionId"])
        assert sum(s["allocatedPower"] for s in status(live).values()) <= 330 + 1e-9
    live.wait_cycles(2)
    alloc = [s["allocatedPower"] for s in status(live).values()]
    assert alloc == [82.5] * 4


@pytest.mark.parametrize("charger,idx", [("NOPE", 1), ("CP001", 0), ("CP001", 3)])
def test_unknown_charger_or_connector_is_404(live, charger, idx):
    r = live.http.post("/sessions", json={"connectorId": {"chargerId": charger, "idx": idx}, "vehicleMaxPower": 50})
    assert r.status_code == 404
    assert "error" in r.json()


def test_connector_in_use_is_409(live):
    start(live, "CP001", 1, 50)
    r = live.http.post("/sessions", json={"connectorId": {"chargerId": "CP001", "idx": 1}, "vehicleMaxPower": 50})
    assert r.status_code == 409


@pytest.mark.parametrize("body,field", [
    ({"connectorId": {"chargerId": "CP001", "idx": 1}, "vehicleMaxPower": 0}, "vehicleMaxPower"),
    ({"connectorId": {"chargerId": "CP001", "idx": 1}}, "vehicleMaxPower"),
    ({"connectorId": {"chargerId": "CP001"}, "vehicleMaxPower": 5}, "connectorId.idx"),
])
def test_invalid_session_body_is_400_naming_the_field(live, body, field):
    r = live.http.post("/sessions", json=body)
    assert r.status_code == 400
    assert r.json()["field"] == field


def test_power_update_caps_the_session_and_frees_power_for_others(live):
    a = start(live, "CP001", 1, 150)
    b = start(live, "CP002", 1, 300)
    live.wait_cycles(2)
    assert {s["allocatedPower"] for s in status(live).values()} == {150, 180}
    r = live.http.post(f"/sessions/{a['sessionId']}/power-update", json={"consumedPower": 40})
    assert r.status_code == 200
    capped = r.json()["session"]["allocatedPower"]
    assert 40 < capped <= 45  # near what it draws (probe margin), applied at once
    live.wait_cycles(2)
    after = status(live)
    assert after[b["sessionId"]]["allocatedPower"] == 200  # the charger's max: freed power went to B
    # Drawing up to its cap again lifts it: the next cycles give A its fair share back.
    live.http.post(f"/sessions/{a['sessionId']}/power-update", json={"consumedPower": capped})
    live.wait_cycles(2)
    after = status(live)
    assert after[a["sessionId"]]["allocatedPower"] == 150
    assert after[b["sessionId"]]["allocatedPower"] == 180


def test_power_update_unknown_id_is_404_and_bad_body_400(live):
    assert live.http.post("/sessions/nope/power-update", json={"consumedPower": 3}).status_code == 404
    a = start(live, "CP001", 1, 50)
    r = live.http.post(f"/sessions/{a['sessionId']}/power-update", json={"consumedPower": -1})
    assert r.status_code == 400 and r.json()["field"] == "consumedPower"


def test_stop_is_204_then_404(live):
    a = start(live, "CP001", 1, 50)
    r = live.http.post(f"/sessions/{a['sessionId']}/stop")
    assert r.status_code == 204 and r.content == b""
    assert live.http.post(f"/sessions/{a['sessionId']}/stop").status_code == 404
    assert status(live) == {}


def test_replacing_the_config_drops_api_sessions(live):
    start(live, "CP001", 1, 50)
    new = {"stationId": "S2", "gridCapacity": 50, "chargers": [{"id": "X", "maxPower": 22, "connectors": 1}]}
    r = live.http.post("/station/config", json=new)
    assert r.status_code == 200 and r.json()["stationId"] == "S2"
    assert status(live) == {}
    assert start(live, "X", 1, 11)["allocatedPower"] == 11


@pytest.mark.parametrize("body,field", [
    ({"stationId": "S", "gridCapacity": -1, "chargers": []}, "gridCapacity"),
    ({"gridCapacity": 10, "chargers": []}, "stationId"),
    ({"stationId": "S", "gridCapacity": 10, "chargers": [{"id": "A", "maxPower": 5, "connectors": 0}]},
     "chargers.0.connectors"),
    ({"stationId": "S", "gridCapacity": 10, "chargers": [{"id": "A", "maxPower": 5, "connectors": 1},
                                                         {"id": "A", "maxPower": 5, "connectors": 1}]},
     "chargers[1].id"),
    ({"stationId": "S", "gridCapcity": 10}, "gridCapcity"),
])
def test_invalid_config_is_400_and_keeps_the_old_one(live, body, field):
    r = live.http.post("/station/config", json=body)
    assert r.status_code == 400
    assert field in {e["field"] for e in r.json()["errors"]}
    assert live.http.get("/station/config").json()["stationId"] == ELECTRA["stationId"]


def test_allocations_match_the_allocator(live):
    """The API station runs the project's allocator, not a second one."""
    sessions = [start(live, c, i, v) for c, i, v in [("CP001", 1, 60), ("CP001", 2, 200), ("CP002", 2, 33)]]
    live.wait_cycles(2)
    request = {**ELECTRA, "sessions": [{"sessionId": s["sessionId"], "connectorId": s["connectorId"],
                                        "vehicleMaxPower": s["vehicleMaxPower"]} for s in sessions]}
    expected = allocator.allocate(request)["allocations"]
    assert {k: v["allocatedPower"] for k, v in status(live).items()} == pytest.approx(expected, abs=0.01)
