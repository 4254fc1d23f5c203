"""The savings ledger fed by the control loop: 15-minute intervals from the meters' counters
(or integrated power), priced with the tariff in force, stored, published, continued after a
restart, and compared with the uncontrolled counterfactual. Injected clock: no sleeping.

The test station (cycle_helpers) integrates its meters as its clock advances; cycles here
are 5 s apart (the ledger integrates gaps up to 5 s).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cycle_helpers import Station, settings

from agent.energy.ledger_recorder import LedgerRecorder
from agent.energy.planning import Forecasts
from agent.model.clock import ManualClock
from agent.model.snapshot import BatteryState
from agent.store.signals import PriceSlot, Signals, Tariff
from agent.uplink.messages import Savings

CP1_1, CP2_1 = ("CP1", 1), ("CP2", 1)
STEP = 5.0


def rig(start: datetime, **station):
    st = Station(clock=ManualClock(wall=start), **station)
    signals = Signals(st.db)
    sent: list[dict] = []
    forecasts = Forecasts(st.db)
    rec = LedgerRecorder(st.cfg, st.db, signals, forecasts, lambda kind, p: sent.append(p))
    return st, rec, signals, sent, forecasts


def run(st, rec, seconds):
    for _ in range(round(seconds / STEP)):
        rec.observe(st.cycle(advance=STEP, follow=True))


def rows(st, policy="actual"):
    return {r["interval"]: r for r in st.db.query(
        "SELECT * FROM ledger WHERE policy = ? ORDER BY interval", [policy])}  # fmt: skip


def test_intervals_from_counters_priced_stored_and_published():
    st, rec, signals, sent, forecasts = rig(datetime(2026, 6, 17, 12, 0, tzinfo=UTC), base_kw=30.0)
    day = datetime(2026, 6, 17, tzinfo=UTC)
    signals.set_tariff(Tariff(id="t1", demand_charge_eur_kw=10.0, slots=[PriceSlot(
        start=day, end=day + timedelta(days=1), import_eur_kwh=0.40, export_eur_kwh=0.05)]))  # fmt: skip
    st.plug(CP1_1)
    run(st, rec, 35 * 60)  # 12:00 .. 12:35: two intervals closed
    assert [p["period"] for p in sent] == ["15min", "15min"]
    for p in sent:
        Savings.model_validate(p)  # the uplink's message contract
    first, second = sent
    assert (first["start"], second["start"]) == ("2026-06-17T12:00:00.000Z",
                                                 "2026-06-17T12:15:00.000Z")  # fmt: skip
    # 30 kW base + CP1 at its 50 kW = 80 kW for a whole interval: 20 kWh (counters).
    assert second["importKwh"] == pytest.approx(20.0, abs=1e-3)
    assert second["costEur"] == pytest.approx(20.0 * 0.40, abs=1e-3)
    assert second["co2Kg"] == pytest.approx(20.0 * 0.300, abs=1e-3)
    assert second["evKwh"] == pytest.approx(12.5, abs=1e-3)
    assert second["peakKw"] == pytest.approx(80.0, abs=1e-3)
    # The first interval began before the first reading: integrated, 5 s short.
    assert first["importKwh"] == pytest.approx(80.0 * (900 - STEP) / 3600, abs=1e-3)
    stored = rows(st)
    assert set(stored) == {48, 49}  # slots of the day (UTC)
    assert stored[49]["import_kwh"] == pytest.approx(20.0)
    assert stored[49]["energy_cost_eur"] == pytest.approx(8.0)
    assert set(rows(st, "uncontrolled")) == {48, 49}
    assert rec.summary()["costEur"] == pytest.approx(
        sum(p["costEur"] for p in sent) + 10.0 * 80.0, abs=1e-3)  # fmt: skip
    # The forecasts learned the station's base load for these weekday slots.
    assert forecasts.base.predict(datetime(2026, 6, 17, 12, 20, tzinfo=UTC)) == pytest.approx(30.0)
    assert rec.interval_so_far(st.clock.now())[0] == pytest.approx(80.0 * 5 / 60, abs=1e-3)


def test_invalid_counters_fall_back_to_integrated_power():
    st, rec, _, sent, _ = rig(datetime(2026, 6, 17, 12, 0, tzinfo=UTC), base_kw=40.0)
    run(st, rec, 16 * 60)
    st.import_kwh = 5.0  # the counter went backwards (meter swapped or reset)
    run(st, rec, 15 * 60)
    st.import_kwh = st.export_kwh = None  # and then no counters at all
    run(st, rec, 15 * 60)
    assert len(sent) == 3
    assert sent[1]["importKwh"] == pytest.approx(10.0, abs=1e-3)
    assert sent[2]["importKwh"] == pytest.approx(10.0, abs=1e-3)


def test_day_message_at_midnight_and_restart_continues_the_day():
    st, rec, _, sent, _ = rig(datetime(2026, 6, 17, 23, 40, tzinfo=UTC), base_kw=20.0)
    run(st, rec, 10 * 60)  # 23:40 .. 23:50: the 23:30 slot closed at 23:45
    rec.flush()  # shutdown in the 23:45 slot: its first 5 minutes are stored
    before = rows(st)[95]["import_kwh"]
    assert before == pytest.approx(20.0 * 5 / 60, abs=1e-6)
    rec2 = LedgerRecorder(st.cfg, st.db, Signals(st.db), None, lambda k, p: sent.append(p))
    for _ in range(round(25 * 60 / STEP)):  # 23:50 .. 00:15
        rec2.observe(st.cycle(advance=STEP, follow=True))
    periods = [p["period"] for p in sent]
    assert periods == ["15min", "15min", "day", "15min"]
    day = sent[2]
    Savings.model_validate(day)
    assert (day["start"], day["end"]) == ("2026-06-17T00:00:00.000Z", "2026-06-18T00:00:00.000Z")
    # 23:40 .. 24:00 at 20 kW (less the first 5 s before any reading, and one 5 s gap at
    # the restart): the day total includes the rows stored before the restart.
    assert day["importKwh"] == pytest.approx(20.0 * (1200 - 2 * STEP) / 3600, abs=1e-3)
    assert rows(st)[95]["import_kwh"] == pytest.approx(20.0 * (900 - STEP) / 3600)  # continued


def test_battery_savings_against_the_uncontrolled_counterfactual():
    cfg = settings(station={"battery": {"inverter": "inv", "bms": "bms", "max_charge_kw": 40,
                                        "max_discharge_kw": 40, "capacity_kwh": 80}})  # fmt: skip
    st, rec, _, sent, _ = rig(datetime(2026, 6, 17, 12, 0, tzinfo=UTC), cfg=cfg, base_kw=30.0)
    st.plug(CP1_1)
    st.battery = BatteryState(soc=60.0, max_charge_kw=40.0, max_discharge_kw=40.0, power_kw=20.0)
    run(st, rec, 31 * 60)
    second = sent[1]
    # Actual: 30 + 50 - 20 kW of battery = 60 kW. Counterfactual: no battery, 80 kW.
    assert second["importKwh"] == pytest.approx(15.0, abs=1e-3)
    assert second["baselineCostEur"] == pytest.approx(20.0 * 0.25, abs=1e-3)
    assert second["savingsEur"] == pytest.approx(5.0 * 0.25, abs=1e-3)
    assert second["batteryDischargeKwh"] == pytest.approx(5.0, abs=1e-3)
    base = rows(st, "uncontrolled")[49]
    assert base["import_kwh"] == pytest.approx(20.0, abs=1e-3)


def test_counterfactual_back_to_back_sessions_on_one_connector_both_charge():
    """Issue 16: the counterfactual EV charges slower than the real one, so it is still open
    when the next EV plugs into the same connector; both charge, sharing the charger."""
    from agent.energy.ledger_recorder import Counterfactual

    cf = Counterfactual(settings())
    cf.session("A", "CP2", 1, 50.0, 100.0)
    cf.step(10.0, 0.0, {"A": 5.0}, {"A"})
    cf.session("B", "CP2", 1, 50.0, 30.0)  # A's EV has left; B takes CP2#1
    # A's real EV took 35 kWh before leaving: more than the counterfactual's 12.5 so far.
    given = cf.step(10.0, 0.0, {"A": 30.0}, {"B"})
    assert given["A"] > 0 and given["B"] > 0
    # Still one 50 kW charger: the two share it.
    assert given["A"] + given["B"] <= 50.0 * 0.25 + 1e-6


def test_billing_day_holds_the_socs_at_midnight_for_the_planner():
    """Issue 16: the planner hands the battery back at midnight at least as full as the
    day began: the ledger says when the billing day ends and the SoC when it began (the
    first reading on the first day, the last reading before midnight after that)."""
    st, rec, _, _, _ = rig(datetime(2026, 6, 17, 23, 50, tzinfo=UTC),
                           battery=BatteryState(soc=60.0, max_charge_kw=40.0,
                                                max_discharge_kw=40.0, power_kw=0.0))
    assert rec.billing_day(st.clock.now()) is None  # nothing read yet
    run(st, rec, 60)
    end, soc = rec.billing_day(st.clock.now())
    assert end == datetime(2026, 6, 18, tzinfo=UTC) and soc == pytest.approx(60.0)
    st.battery = BatteryState(soc=42.0, max_charge_kw=40.0, max_discharge_kw=40.0, power_kw=0.0)
    run(st, rec, 15 * 60)  # across midnight
    end, soc = rec.billing_day(st.clock.now())
    assert end == datetime(2026, 6, 19, tzinfo=UTC) and soc == pytest.approx(42.0)
