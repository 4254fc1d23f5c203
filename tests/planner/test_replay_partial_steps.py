"""Issue 16: the replay cuts its steps where an EV arrives or leaves, as the daemon's 250 ms
cycle has no step that holds an EV for part of it. Before, an EV leaving 30 s into a 60 s
step kept its share of the connection for the whole step in the allocator's eyes while it
drew only half of it, so the EVs that stayed lost power there (the bench's days delivered
less than uncontrolled charging on 19 of 20)."""

from __future__ import annotations

import pytest

from agent.energy.replay import _steps, parse_day, simulate


def day_doc() -> dict:
    # One hour, a 100 kW connection, no base load, PV or battery; three EVs wanting far more
    # than they can get, so the connection binds all hour. B leaves and C arrives 30 s into
    # a minute.
    series = [{"start": f"2026-06-17T12:{m:02d}:00Z", "importPrice": 0.30, "exportPrice": 0.05,
               "pvPower": 0.0, "baseLoad": 0.0, "carbonIntensity": 250.0}
              for m in (0, 15, 30, 45)]
    evs = [("A", "DC1", "12:00:00", "13:00:00"), ("B", "DC2", "12:00:00", "12:20:30"),
           ("C", "DC2", "12:40:30", "13:00:00")]
    return {
        "station": {"stationId": "PARTIAL", "gridCapacity": 100.0,
                    "chargers": [{"id": "DC1", "maxPower": 150.0, "connectors": 1},
                                 {"id": "DC2", "maxPower": 150.0, "connectors": 1}]},
        "tariff": {"demandCharge": 0.0},
        "chargingEfficiency": 0.95,
        "series": series,
        "evs": [{"sessionId": sid, "connectorId": {"chargerId": c, "idx": 1},
                 "arrival": f"2026-06-17T{a}Z", "departure": f"2026-06-17T{d}Z",
                 "batteryCapacity": 500.0, "socArrival": 0.1, "energyNeeded": 400.0,
                 "vehicleMaxPower": 150.0}
                for sid, c, a, d in evs],
    }


def test_steps_are_cut_where_an_ev_arrives_or_leaves():
    day = parse_day(day_doc())
    edges = {round(t * 3600, 6) for t, _, _ in _steps(day, 15)}
    assert {20 * 60 + 30.0, 40 * 60 + 30.0} <= edges
    assert len(edges) == 60 + 2  # the 60 minutes, and the two cuts


@pytest.mark.parametrize("policy", ["fair", "planner"])
def test_the_connection_stays_used_when_an_ev_leaves_or_arrives_inside_a_minute(policy: str):
    day = parse_day(day_doc())
    r = simulate(day, policy)
    # Someone always wants more than the connection gives: every quarter imports it whole
    # (100 kW for 0.25 h, to the allocator's 10 W rounding), also the ones with B's
    # departure and C's arrival inside a minute.
    for iv in r.ledger.intervals:
        assert iv.import_kwh == pytest.approx(25.0, abs=0.01), iv.index
    # A alone from 12:20:30 to 12:40:30 gets all 100 kW there.
    assert r.energy_delivered == pytest.approx(0.95 * 100.0, abs=0.05)
