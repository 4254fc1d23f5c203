"""Issue 16, honest accounting in the daemon: a billing day whose battery ends below the
energy it began with pays what buying the shortfall back really costs (through the charging
losses, at the day's prices, the demand charge on any higher peak included); one that ends
above is not credited. The refill is the replay's definition (`savings.refill_cost`).

The recorder tests run the real control cycle (cycle_helpers.Station) into the real
`LedgerRecorder` across midnight UTC, with an injected clock: no sleeping. The battery's SoC
is what its BMS reports; the test station sets it, it does not integrate it.

The refill is priced in the recorder's worker thread, not in the midnight cycle
(agent/energy/day_close.py): the tests wait for that pricing (`pending_refill`) and run one
more cycle, which emits the day's message; the gated tests hold the worker on an event to
see what the loop does meanwhile (nothing is timed).
"""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime, timedelta

import pytest
from cycle_helpers import Station, settings

from agent.api.daemon_context import DaemonContext
from agent.control.devices import DeviceStatus, StationDevices
from agent.control.stats import CycleStats
from agent.energy import ledger_recorder
from agent.energy.ledger_recorder import LedgerRecorder
from agent.energy.savings import SavingsLedger, refill_bound, refill_cost
from agent.model.clock import ManualClock
from agent.model.snapshot import BatteryState
from agent.state.station_state import EnergyReadouts, StationState
from agent.store.signals import PriceSlot, Signals, Tariff
from agent.uplink.messages import Savings

STEP = 5.0
CAPACITY = 80.0  # kWh
ETA = math.sqrt(0.9)  # the charge efficiency the daemon's planner assumes (BatterySpec)


def _ledger(loads_kw: list[float], demand_charge: float) -> SavingsLedger:
    led = SavingsLedger(demand_charge=demand_charge, interval_hours=0.25)
    for k, kw in enumerate(loads_kw):
        led.record(k * 0.25, 0.25, kw, 0.10, 0.0)
    return led


def test_refill_pays_its_peak_effect_not_just_the_cheapest_price():
    # One hour in four 15-minute intervals at 40, 0, 0, 40 kW; the cheap first interval is
    # where the peak already is. 9 kWh short through a 0.9 charge efficiency: 10 kWh to buy,
    # at most 40 kW (10 kWh an interval).
    prices = [0.10, 0.30, 0.30, 0.30]
    kw = dict(max_charge_kw=40.0, charge_efficiency=0.9, grid_capacity_kw=100.0)
    # Without a demand charge: all of it in the cheap interval, 10 kWh x 0.10.
    assert refill_cost(_ledger([40, 0, 0, 40], 0.0), 9.0, prices, [0.0] * 4,
                       **kw) == pytest.approx(1.00, abs=1e-3)  # fmt: skip
    # With 10 EUR/kW: 1 kWh more in the first interval raises the peak by 4 kW (40 EUR), so
    # it is bought in the empty ones at 0.30 (10 kWh there is 40 kW: no higher peak).
    led = _ledger([40, 0, 0, 40], 10.0)
    assert refill_cost(led, 9.0, prices, [0.0] * 4, **kw) == pytest.approx(3.00, abs=1e-3)
    # The fallback bound (if the LP fails) is never below it: 10 x 0.30 + 10 x 40.
    assert refill_bound(led, 9.0, prices, max_charge_kw=40.0,
                        charge_efficiency=0.9) == pytest.approx(403.0)  # fmt: skip


def test_nothing_short_costs_nothing_and_ending_above_is_not_credited():
    led = _ledger([40, 0, 0, 40], 10.0)
    kw = dict(max_charge_kw=40.0, charge_efficiency=0.9, grid_capacity_kw=100.0)
    for short in (0.0, -25.0):  # ended at its start, and 25 kWh above it
        assert refill_cost(led, short, [0.1] * 4, [0.0] * 4, **kw) == 0.0
        assert refill_bound(led, short, [0.1] * 4, max_charge_kw=40.0, charge_efficiency=0.9) == 0.0


def _rig(start: datetime, soc: float):
    cfg = settings(station={"battery": {"inverter": "inv", "bms": "bms", "max_charge_kw": 40,
                                        "max_discharge_kw": 40, "capacity_kwh": CAPACITY}})  # fmt: skip
    st = Station(cfg=cfg, clock=ManualClock(wall=start), base_kw=30.0,
                 battery=BatteryState(soc=soc, max_charge_kw=40.0, max_discharge_kw=40.0,
                                      power_kw=0.0))  # fmt: skip
    signals = Signals(st.db)
    day = start.replace(hour=0, minute=0)
    # Cheap only in the day's first 15 minutes (when the agent was not running): the
    # refill can take 30 kW there (7.5 kWh) without raising the day's 30 kW peak.
    signals.set_tariff(Tariff(id="t1", demand_charge_eur_kw=10.0, slots=[
        PriceSlot(start=day, end=day + timedelta(minutes=15), import_eur_kwh=0.10,
                  export_eur_kwh=0.0),
        PriceSlot(start=day + timedelta(minutes=15), end=day + timedelta(days=2),
                  import_eur_kwh=0.40, export_eur_kwh=0.0)]))  # fmt: skip
    sent: list[dict] = []
    rec = LedgerRecorder(st.cfg, st.db, signals, None, lambda kind, p: sent.append(p))
    return st, rec, sent


def _run(st, rec, seconds):
    for _ in range(round(seconds / STEP)):
        rec.observe(st.cycle(advance=STEP, follow=True))


def _settled(st, rec):
    """The worker's pricing done, then one more cycle: the one that emits the day."""
    pending = rec.pending_refill
    if pending is not None:
        pending.result(timeout=60)
    _run(st, rec, STEP)
    assert rec.pending_refill is None


def _set_soc(st, soc):
    st.battery = BatteryState(soc=soc, max_charge_kw=40.0, max_discharge_kw=40.0, power_kw=0.0)


def _day_message(sent):
    days = [p for p in sent if p["period"] == "day"]
    assert len(days) == 1
    Savings.model_validate(days[0])  # the uplink's message contract, new fields included
    return days[0]


# 23:30 .. 24:00 at 30 kW, less the first 5 s before any reading; demand charge on 30 kW.
ENERGY_EUR = 30.0 * (1800 - STEP) / 3600 * 0.40
DEMAND_EUR = 10.0 * 30.0


def test_a_day_ending_short_pays_the_refill_through_the_recorder_at_midnight():
    st, rec, sent = _rig(datetime(2026, 6, 17, 23, 30, tzinfo=UTC), soc=60.0)
    _run(st, rec, 10 * 60)  # the day began (first reading) at 60 %: 48 kWh
    _set_soc(st, 50.0)  # the battery was spent: 40 kWh
    _run(st, rec, 25 * 60)  # across midnight
    _settled(st, rec)
    day = _day_message(sent)
    assert (day["batteryStartKwh"], day["batteryEndKwh"]) == (pytest.approx(48.0),
                                                              pytest.approx(40.0))  # fmt: skip
    # 8 kWh short through the losses: 8.433 kWh to buy; 7.5 of it at 0.10 in 00:00-00:15
    # (30 kW, the day's peak, no higher), the rest at 0.40 (a higher peak costs 10 EUR/kW).
    bought = 8.0 / ETA
    refill = 7.5 * 0.10 + (bought - 7.5) * 0.40
    assert day["refillEur"] == pytest.approx(refill, abs=2e-3)
    assert day["costEur"] == pytest.approx(ENERGY_EUR + DEMAND_EUR + refill, abs=2e-3)
    # The counterfactual has no battery: the refill comes off the savings.
    assert day["savingsEur"] == pytest.approx(day["baselineCostEur"] - day["costEur"], abs=1e-3)
    # Stored on the day's last 'actual' row, NULL on the others.
    rows = {r["interval"]: r["refill_eur"] for r in st.db.query(
        "SELECT interval, refill_eur FROM ledger WHERE policy = 'actual'"
        " AND period_start = '2026-06-17T00:00:00.000Z'")}  # fmt: skip
    assert rows[95] == pytest.approx(refill, abs=2e-3) and rows[94] is None
    # The 15-minute messages carry none of the day's fields.
    assert all("refillEur" not in p for p in sent if p["period"] == "15min")
    # The local API's totals since the ledger began add the refill to the energy cost.
    state = StationState(st.cfg, CycleStats(), DeviceStatus(StationDevices(st.cfg)))
    state.energy = EnergyReadouts(ledger=rec)
    totals = DaemonContext(state, None, st.db, st.clock, signals=Signals(st.db)).savings()
    energy = st.db.execute("SELECT SUM(energy_cost_eur) FROM ledger WHERE policy = 'actual'"
                           ).fetchone()[0]  # fmt: skip
    assert totals["cost_eur"] == pytest.approx(energy + refill, abs=2e-3)


def test_a_day_ending_above_its_start_is_not_credited_and_the_next_day_starts_there():
    st, rec, sent = _rig(datetime(2026, 6, 17, 23, 30, tzinfo=UTC), soc=60.0)
    _run(st, rec, 10 * 60)
    _set_soc(st, 75.0)  # ends 12 kWh above its start
    _run(st, rec, 25 * 60)
    assert rec.pending_refill is None  # nothing short: nothing to price, out at midnight
    day = _day_message(sent)
    assert (day["batteryStartKwh"], day["batteryEndKwh"]) == (pytest.approx(48.0),
                                                              pytest.approx(60.0))  # fmt: skip
    assert day["refillEur"] == 0.0
    assert day["costEur"] == pytest.approx(ENERGY_EUR + DEMAND_EUR, abs=2e-3)
    # The next billing day began where this one ended; so far nothing is charged for it.
    today = rec.summary()
    assert today["batteryStartKwh"] == pytest.approx(60.0)
    assert today["batteryNowKwh"] == pytest.approx(60.0)


def test_a_station_without_a_battery_reports_no_refill():
    st = Station(clock=ManualClock(wall=datetime(2026, 6, 17, 23, 50, tzinfo=UTC)), base_kw=30.0)
    sent: list[dict] = []
    rec = LedgerRecorder(st.cfg, st.db, Signals(st.db), None, lambda kind, p: sent.append(p))
    _run(st, rec, 15 * 60)
    day = _day_message(sent)
    assert {"refillEur", "batteryStartKwh", "batteryEndKwh"}.isdisjoint(
        k for k, v in day.items() if v is not None)  # fmt: skip
    assert day["savingsEur"] == pytest.approx(day["baselineCostEur"] - day["costEur"], abs=1e-3)


def test_after_a_restart_the_day_starts_at_the_stored_midnight_soc():
    """The agent stopped in the morning and started again late in the day: the billing day
    began at the SoC stored with the day before's last interval (60 %), not at the first
    reading after the restart (50 %), so the day's refill still counts the 8 kWh."""
    st, rec, sent = _rig(datetime(2026, 6, 17, 23, 50, tzinfo=UTC), soc=60.0)
    _run(st, rec, 15 * 60)  # 23:50 .. 00:05 on 06-18: row 95 of 06-17 stored at 60 %
    rec.flush()
    st.clock.advance(23 * 3600 + 40 * 60)  # stopped until 23:45 on 06-18
    _set_soc(st, 50.0)
    rec2 = LedgerRecorder(st.cfg, st.db, Signals(st.db), None, lambda kind, p: sent.append(p))
    for _ in range(round(20 * 60 / STEP)):  # 23:45 .. 00:05 on 06-19
        rec2.observe(st.cycle(advance=STEP, follow=True))
    _settled(st, rec2)
    days = [p for p in sent if p["period"] == "day"]
    assert [d["start"] for d in days] == ["2026-06-17T00:00:00.000Z", "2026-06-18T00:00:00.000Z"]
    assert days[0]["refillEur"] == 0.0  # 06-17: 60 % to 60 %
    second = days[1]
    Savings.model_validate(second)
    assert (second["batteryStartKwh"], second["batteryEndKwh"]) == (pytest.approx(48.0),
                                                                    pytest.approx(40.0))  # fmt: skip
    # 06-18 is all at 0.40, with room under its 30 kW peak: 8 kWh through the losses.
    assert second["refillEur"] == pytest.approx(8.0 / ETA * 0.40, abs=2e-3)


def _gated(monkeypatch, fail: bool = False):
    """The recorder's `refill_cost` held until the returned event is set (at most 5 s, so
    that the pre-change code, which priced in the midnight cycle, fails rather than hangs),
    then the real one (or a failure)."""
    gate = threading.Event()
    real = ledger_recorder.refill_cost

    def held(*args, **kwargs):
        gate.wait(timeout=5.0)
        if fail:
            raise RuntimeError("highspy gone")
        return real(*args, **kwargs)

    monkeypatch.setattr(ledger_recorder, "refill_cost", held)
    return gate


# 06-17 as the short-day rig meters it (48 -> 40 kWh): the LP's refill and its bound
# (8 kWh through the losses at the dearest 0.40, and 10 EUR/kW on the 40 kW charge power).
REFILL = 7.5 * 0.10 + (8.0 / ETA - 7.5) * 0.40
BOUND = 8.0 / ETA * 0.40 + 10.0 * 40.0


def _from_last_interval(sent):
    """The messages' periods from 06-17's last interval (23:45) on, in emission order."""
    first = next(i for i, p in enumerate(sent) if p["start"] == "2026-06-17T23:45:00.000Z")
    return [p["period"] for p in sent[first:]]


def _short_day_to_midnight(st, rec):
    _run(st, rec, 10 * 60)  # 23:30 .. 23:40 at 60 %
    _set_soc(st, 50.0)
    _run(st, rec, 20 * 60)  # .. 24:00, the last cycle at midnight


def test_the_midnight_cycle_leaves_the_refill_to_the_worker_and_a_later_cycle_emits_it(
        monkeypatch):
    gate = _gated(monkeypatch)
    st, rec, sent = _rig(datetime(2026, 6, 17, 23, 30, tzinfo=UTC), soc=60.0)
    try:
        _short_day_to_midnight(st, rec)
        assert st.clock.now() == datetime(2026, 6, 18, tzinfo=UTC)
        assert [p for p in sent if p["period"] == "day"] == []  # priced off the loop
        _run(st, rec, 10 * 60)  # the loop goes on: 120 cycles while the pricing is held
        assert [p for p in sent if p["period"] == "day"] == []
        assert rec.pending_refill is not None and not rec.pending_refill.done()
        # The day's row waits for its refill; today's rows are today's (not yet closed).
        rows = st.db.query("SELECT refill_eur FROM ledger WHERE policy = 'actual'"
                           " AND period_start = '2026-06-17T00:00:00.000Z' AND interval = 95")
        assert [r["refill_eur"] for r in rows] == [None]
    finally:
        gate.set()
    _settled(st, rec)
    day = _day_message(sent)
    assert day["refillEur"] == pytest.approx(REFILL, abs=2e-3)
    assert day["costEur"] == pytest.approx(ENERGY_EUR + DEMAND_EUR + REFILL, abs=2e-3)
    row = st.db.execute("SELECT refill_eur FROM ledger WHERE policy = 'actual' AND"
                        " period_start = '2026-06-17T00:00:00.000Z' AND interval = 95").fetchone()
    assert row[0] == pytest.approx(REFILL, abs=2e-3)
    # Emitted once, before the next day's first interval.
    _run(st, rec, 10 * 60)
    assert _from_last_interval(sent) == ["15min", "day", "15min"]
    _day_message(sent)


def test_the_next_interval_waits_for_the_day_before_it(monkeypatch):
    """The next day's first 15-minute message never goes out before the day's: a pricing
    still running at 00:15 is waited for there (never in practice: 11-53 ms)."""
    gate = _gated(monkeypatch)
    st, rec, sent = _rig(datetime(2026, 6, 17, 23, 30, tzinfo=UTC), soc=60.0)
    _short_day_to_midnight(st, rec)
    threading.Timer(0.2, gate.set).start()  # held until the 00:15 close is waiting
    _run(st, rec, 16 * 60)
    assert _from_last_interval(sent) == ["15min", "day", "15min"]
    assert _day_message(sent)["refillEur"] == pytest.approx(REFILL, abs=2e-3)


def test_stopped_right_after_midnight_the_flush_emits_the_day_with_its_refill(monkeypatch):
    gate = _gated(monkeypatch)
    st, rec, sent = _rig(datetime(2026, 6, 17, 23, 30, tzinfo=UTC), soc=60.0)
    _short_day_to_midnight(st, rec)
    assert [p for p in sent if p["period"] == "day"] == []
    threading.Timer(0.2, gate.set).start()  # the pricing finishes while flush waits
    rec.flush()  # shutdown, the first cycle after midnight
    assert _day_message(sent)["refillEur"] == pytest.approx(REFILL, abs=2e-3)
    assert rec.pending_refill is None


@pytest.mark.parametrize("how", ["not done by shutdown", "failed"])
def test_a_refill_not_priced_is_charged_its_bound(monkeypatch, how):
    gate = _gated(monkeypatch, fail=how == "failed")
    if how == "failed":
        gate.set()
    monkeypatch.setattr(ledger_recorder, "SETTLE_WAIT_S", 0.2, raising=False)
    st, rec, sent = _rig(datetime(2026, 6, 17, 23, 30, tzinfo=UTC), soc=60.0)
    try:
        _short_day_to_midnight(st, rec)
        rec.flush()
    finally:
        gate.set()
    day = _day_message(sent)
    assert day["refillEur"] == pytest.approx(BOUND, abs=2e-3)
    assert day["costEur"] == pytest.approx(ENERGY_EUR + DEMAND_EUR + BOUND, abs=2e-3)
