"""Issue 16: generated days, the arrival forecast, expected sessions, honest accounting and
the replay's history interface (a reduced bench: bench/savings.py runs 20 days)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hardware_sim.station_days import day, with_history

from agent.cli import main as sems
from agent.energy.replay import (
    learn_arrivals,
    parse_day,
    refill_cost,
    result_cost,
    simulate,
)
from allocator.forecast import ArrivalForecast, SessionRecord, station_prior
from allocator.foresight import expected_sessions, is_expected
from tests.planner.test_replay import small_day


def test_generated_days_are_deterministic_valid_and_vary():
    assert day(3, 8) == day(3, 8)
    a, b = parse_day(day(3, 8)), parse_day(day(3, 9))
    assert a.station_id == b.station_id and a.chargers == b.chargers
    assert [e.session_id for e in a.evs] != [e.session_id for e in b.evs] or \
        list(a.import_price) != list(b.import_price)
    kinds = {e.session_id[0] for k in range(7, 14) for e in parse_day(day(3, k)).evs}
    assert {"F", "P"} <= kinds  # a depot fleet and public fast charging
    assert any(e.v2g for k in range(7, 14) for e in parse_day(day(3, k)).evs)


def test_forecast_learns_a_fleet_that_arrives_every_evening():
    f = ArrivalForecast()
    start = datetime(2026, 3, 2, 12, tzinfo=UTC)  # a Monday, noon
    for d in range(4):  # Monday to Thursday, identical evenings
        s = start + timedelta(days=d)
        f.observe(s, 24.0, [SessionRecord(s + timedelta(hours=6.5), s + timedelta(hours=18),
                                          40.0, 22.0) for _ in range(5)])
    exp = f.expected(start + timedelta(days=4), 96)  # Friday
    long = [a for a in exp if a.long_dwell]
    assert not [a for a in exp if not a.long_dwell]
    assert sum(a.count for a in long) == pytest.approx(5.0, rel=0.05)
    assert sum(a.energy_kwh for a in long) == pytest.approx(200.0, rel=0.05)
    assert all(abs(a.slot - 26) <= 4 for a in long)  # 18:30 is slot 26 after noon
    assert all(a.dwell_h == pytest.approx(11.5) for a in long)


def test_a_new_station_starts_from_its_prior_and_history_takes_over():
    prior = station_prior(fast_connectors=4, slow_connectors=3)
    fresh = ArrivalForecast(prior=prior)
    start = datetime(2026, 3, 2, 12, tzinfo=UTC)
    assert sum(a.energy_kwh for a in fresh.expected(start, 96)) > 100
    for d in range(7):  # a week without a single EV
        fresh.observe(start + timedelta(days=d), 24.0, [])
    quiet = sum(a.energy_kwh for a in fresh.expected(start + timedelta(days=7), 96))
    assert quiet < 0.2 * sum(a.energy_kwh for a in ArrivalForecast(prior=prior).expected(start, 96))


def test_expected_sessions_skip_the_running_slot_and_can_deliver_their_energy():
    doc, hist = with_history(2, 9)
    d = parse_day(doc)
    arrivals = learn_arrivals(d, [parse_day(h) for h in hist]).arrivals.expected(d.start, 96)
    sessions, chargers = expected_sessions(arrivals, 0.25, first_slot_hours=0.1, risk=1.0)
    assert sessions and len(sessions) == len(chargers)
    assert all(is_expected(s.session_id) and s.arrival_h >= 0.1 - 1e-9 for s in sessions)
    for s, c in zip(sessions, chargers, strict=True):
        assert c.max_power * 0.95 * (s.departure_h - s.arrival_h) >= s.energy_needed - 1e-6


def test_a_connector_that_changes_ev_inside_one_step_is_replayed():
    doc = small_day()
    # E5 plugs into DC1#1 twenty seconds after E1 leaves it: both inside one 60 s step.
    doc["evs"].append({"sessionId": "E5", "connectorId": {"chargerId": "DC1", "idx": 1},
                       "arrival": "2026-06-17T13:00:20Z", "departure": "2026-06-17T13:40:00Z",
                       "batteryCapacity": 60.0, "socArrival": 0.5, "energyNeeded": 20.0,
                       "vehicleMaxPower": 100.0, "v2g": False})
    d = parse_day(doc)
    for policy in ("planner", "uncontrolled", "fair"):
        r = simulate(d, policy)
        assert r.energy_delivered > 0 and r.plan_failures == 0
    kwh = simulate(d, "uncontrolled").ledger
    assert sum(iv.session_kwh.get("E5", 0.0) for iv in kwh.intervals) > 15.0


def test_the_planner_hands_the_battery_back_and_a_shortfall_is_paid_in_full():
    d = parse_day(small_day())
    r = simulate(d, "planner")
    assert r.battery_end_energy >= d.battery.soc_start * d.battery.capacity - 0.5
    # A day that ends 10 kWh short pays at least the cheapest energy through the losses.
    r.battery_end_energy = d.battery.soc_start * d.battery.capacity - 10.0
    cheapest = float(min(d.import_price)) * 10.0 / d.battery.round_trip ** 0.5
    assert refill_cost(d, r) >= cheapest - 1e-6
    assert result_cost(d, r) == pytest.approx(r.ledger.cost + refill_cost(d, r))


def test_replay_json_with_history_reports_the_issue_16_keys(tmp_path, capsys):
    doc, hist = with_history(4, 9)
    (tmp_path / "day.json").write_text(json.dumps(doc))
    paths = []
    for i, h in enumerate(hist):
        paths.append(str(tmp_path / f"h{i}.json"))
        (tmp_path / f"h{i}.json").write_text(json.dumps(h))
    assert sems(["replay", "--scenario", str(tmp_path / "day.json"), "--history", *paths,
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("cost", "baselineCost", "optimumCost", "energyDelivered", "unmetEnergy",
                "peakKw", "batteryStartKwh", "batteryEndKwh", "failedPlans"):
        assert key in report, key
    assert report["failedPlans"] == 0
    assert report["batteryEndKwh"] >= report["batteryStartKwh"] - 0.5
    assert report["cost"] < report["baselineCost"]
    assert report["optimumCost"] <= report["cost"] + 1e-6


def test_the_daemon_learns_from_its_sessions_table_what_the_replay_learns_from_day_files():
    """One foresight: the daemon's (agent.energy.foresight.learn_from_sessions, reading the
    sessions table as the daemon writes it) and the replay's (history day files) expect
    the same sessions and hold the same reserve, so both plan alike."""
    from agent.energy.foresight import Tuning, learn_from_sessions
    from agent.store.db import connect

    doc, hist = with_history(5, 12)
    d, history = parse_day(doc), [parse_day(h) for h in hist]
    db = connect(":memory:")
    for h in history:
        for ev in h.evs:
            t0 = h.start + timedelta(hours=ev.arrival_h)
            db["sessions"].insert({
                "id": f"{h.start.date()}-{ev.session_id}", "charger_id": ev.charger_id,
                "connector_idx": ev.idx, "status": "stopped", "started_at": t0.isoformat(),
                "stopped_at": (h.start + timedelta(hours=ev.departure_h)).isoformat(),
                "energy_kwh": ev.energy_needed * 0.9, "energy_target_kwh": ev.energy_needed,
                "vehicle_max_kw": ev.max_power, "updated_at": t0.isoformat()})
    daemon = learn_from_sessions(db, d.start, d.chargers, Tuning())
    replay = learn_arrivals(d, history)
    assert daemon.arrivals is not None and replay.arrivals is not None
    a = expected_sessions(daemon.arrivals.expected(d.start, 96), 0.25)
    b = expected_sessions(replay.arrivals.expected(d.start, 96), 0.25)
    assert a == b and len(a[0]) > 10
    b_ = d.battery
    args = (b_.capacity, b_.min_soc, b_.max_soc, b_.max_discharge)
    assert daemon.reserve_kwh(*args) == pytest.approx(replay.reserve_kwh(*args))


def test_a_busy_start_of_the_day_raises_the_rest_of_it_by_at_most_a_quarter():
    """Issue 16: three EVs in the first 45 minutes rescaled one day's whole expectation by
    ~40 % and its plan's peak from 104 to 146 kW; the intraday ratio is now held within
    x0.8..x1.25 (Tuning.intraday_max), and a quiet start lowers it by at most that too."""
    from agent.energy.foresight import Tuning

    doc, hist = with_history(1, 17)
    d, history = parse_day(doc), [parse_day(h) for h in hist]
    fs = learn_arrivals(d, history, Tuning())
    slot0 = d.start + timedelta(hours=3)

    def expected_kwh(arrived):
        sessions, _, _ = fs.extend([], [], slot0, 32, 0.25, None, (d.start, arrived))
        return sum(s.energy_needed for s in sessions if is_expected(s.session_id))

    plain = expected_kwh([])  # nothing arrived: the lowest ratio
    busy = expected_kwh([SessionRecord(d.start + timedelta(minutes=10 * i),
                                       d.start + timedelta(hours=1), 60.0, 150.0)
                         for i in range(12)])
    assert busy / plain == pytest.approx(1.25 / 0.8, rel=1e-6)
    none = learn_arrivals(d, history, Tuning(intraday_kwh=None))
    flat, _, _ = none.extend([], [], slot0, 32, 0.25, None, (d.start, []))
    assert plain == pytest.approx(0.8 * sum(s.energy_needed for s in flat
                                            if is_expected(s.session_id)), rel=1e-6)
