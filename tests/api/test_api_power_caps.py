"""Power caps through the real local API: set, list, shorten, cancel (issue 12, finding 11).
A cap the cloud set (same signals store as power.cap.set) is cancellable here too."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from agent.store import signals as sig
from api.test_api_electra import start, status

CAPS = "/api/v1/grid/power-caps"


def later(**kw) -> str:
    return (datetime.now(UTC) + timedelta(**kw)).isoformat()


def allocated_total(live) -> float:
    live.wait_cycles(2)
    return sum(s["allocatedPower"] for s in status(live).values())


def wait_total(live, expected: float, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (got := allocated_total(live)) != expected:
        assert time.monotonic() < deadline, f"allocated {got} kW, expected {expected}"


def test_cap_set_shortened_and_cancelled_changes_the_allocation(live):
    start(live, "CP001", 1, 200)
    start(live, "CP002", 1, 200)
    wait_total(live, 330)

    r = live.http.post(CAPS, json={"cap_kw": 100, "end": later(hours=2)})
    assert r.status_code == 201, r.text
    cap = r.json()
    assert cap["active"] and cap["cap_kw"] == 100
    wait_total(live, 100)
    listed = live.http.get(CAPS).json()
    assert listed["active_cap_kw"] == 100 and [c["id"] for c in listed["items"]] == [cap["id"]]
    assert live.http.get("/api/v1/grid/status").json()["power_cap_kw"] == 100

    # Shorten: later than the current end is refused, naming the field; earlier is kept.
    r = live.http.patch(f"{CAPS}/{cap['id']}", json={"end": later(hours=3)})
    assert r.status_code == 400 and "end" in r.text
    new_end = later(hours=1)
    r = live.http.patch(f"{CAPS}/{cap['id']}", json={"end": new_end})
    assert r.status_code == 200, r.text
    got = datetime.fromisoformat(r.json()["end"]) - datetime.fromisoformat(new_end)
    assert abs(got) < timedelta(milliseconds=1)  # answered to the millisecond
    assert r.json()["active"]
    # An end already past ends it now.
    r = live.http.patch(f"{CAPS}/{cap['id']}", json={"end": later(seconds=-1)})
    assert r.status_code == 200 and not r.json()["active"]
    wait_total(live, 330)

    r = live.http.delete(f"{CAPS}/{cap['id']}")
    assert r.status_code == 200 and r.json() == {"cleared": [cap["id"]], "active_cap_kw": None}
    assert live.http.get(CAPS).json()["items"] == []
    assert live.http.delete(f"{CAPS}/{cap['id']}").status_code == 404
    assert live.http.patch(f"{CAPS}/nope", json={"end": later(hours=1)}).status_code == 404


def test_cloud_cap_cancelled_locally_and_delete_all(live):
    now = datetime.now(UTC)
    # What the uplink's power.cap.set stores (its id is the command id).
    live.call(lambda: live.station.signals.set_power_cap(
        sig.PowerCap(id="cmd-42", cap_kw=50, start=now, end=now + timedelta(hours=1))))
    r = live.http.post(CAPS, json={"cap_kw": 80, "end": later(hours=1)})
    assert r.status_code == 201
    start(live, "CP001", 1, 200)
    wait_total(live, 50)
    r = live.http.delete(f"{CAPS}/cmd-42")
    assert r.status_code == 200 and r.json() == {"cleared": ["cmd-42"], "active_cap_kw": 80}
    wait_total(live, 80)
    r = live.http.delete(CAPS)
    assert r.status_code == 200 and r.json()["cleared"] == [r.json()["cleared"][0]]
    assert r.json()["active_cap_kw"] is None
    wait_total(live, 200)
    assert live.call(lambda: live.station.signals.active_power_cap(datetime.now(UTC))) is None


def test_bad_cap_bodies_name_the_field(live):
    for body, field in [({"cap_kw": -1, "end": later(hours=1)}, "cap_kw"),
                        ({"cap_kw": 10}, "end"),
                        ({"cap_kw": 10, "end": later(hours=-1)}, "end"),
                        ({"cap_kw": 10, "end": later(hours=1), "bogus": 1}, "bogus")]:
        r = live.http.post(CAPS, json=body)
        assert r.status_code == 400 and field in r.json()["error"], (body, r.text)
    assert live.http.get(CAPS).json()["items"] == []
