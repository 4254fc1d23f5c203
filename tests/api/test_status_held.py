"""`sems status` renders why the plan holds a session, from the `held` field the station view
carries (`Hold.as_dict()`), in place of the allocator's binding words; without `held`
the binding words stay."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from agent.api.context import ConnectorView, StationView, as_dict
from agent.cli.commands.status import held_words, render
from allocator.guidance import Hold

NOW = datetime(2026, 6, 17, 20, 7, 12, tzinfo=UTC)
ONE = datetime(2026, 6, 18, 1, 0, tzinfo=UTC)
LEAVES = datetime(2026, 6, 18, 6, 30, tzinfo=UTC)
PRICE = Hold(reason="price", planned_kw=0.0, max_kw=50.0, until=ONE, departure=LEAVES,
             due_kwh=42.2, price_now=0.31, price_then=0.12, peak_kw=80.0)  # fmt: skip
PEAK = Hold(reason="peak", planned_kw=21.4, max_kw=50.0, departure=LEAVES, due_kwh=40.0,
            price_now=0.25, peak_kw=180.3, demand_charge=15.0)  # fmt: skip


def station(*connectors: ConnectorView) -> dict:
    return as_dict(StationView(
        station_id="T1", ts=NOW.isoformat(), grid_capacity_kw=400.0, grid_power_kw=210.0,
        base_load_kw=30.0, pv_power_kw=0.0, battery_soc=None, battery_power_kw=None,
        ev_power_kw=180.0, connectors=connectors, cycles=10))  # fmt: skip


def conn(idx: int, sid: str | None, binding: str | None, held: Hold | None) -> ConnectorView:
    return ConnectorView(charger_id="CP1", idx=idx, state="C" if sid else "A", session_id=sid,
                         limit_kw=0.0, power_kw=0.0, binding=binding,
                         held=held.as_dict() if held is not None else None)  # fmt: skip


def test_status_says_why_the_plan_holds_each_session():
    st = station(conn(1, "aaaaaaaa-1", "cap", PRICE), conn(2, "bbbbbbbb-2", "cap", PEAK),
                 conn(3, "cccccccc-3", "vehicle", None), conn(4, None, None, None))
    out = render(st)
    rows = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith("CP1#")}
    assert rows["CP1#1"].endswith(
        "held by the plan: 0.31 EUR/kWh now, 0.12 from 01:00; 42 kWh due by 06:30")
    assert rows["CP1#2"].endswith(
        "slowed to keep the day's peak at 180 kW (demand charge); 40 kWh due by 06:30")
    assert rows["CP1#3"].endswith("the vehicle takes no more")  # not held: the binding's words
    assert "held" not in rows["CP1#4"] and "plan" not in rows["CP1#4"]
    # --json carries the machine field as it is
    held = st["connectors"][0]["held"]
    assert held["reason"] == "price" and held["until"] == "2026-06-18T01:00:00+00:00"
    assert held["price_now_eur_kwh"] == 0.31 and held["due_kwh"] == 42.2
    assert st["connectors"][2]["held"] is None
    # --wide: full times
    assert "0.12 from 2026-06-18T01:00:00+00:00" in render(st, wide=True)


def test_every_reason_reads_as_words():
    st = {"ts": NOW.isoformat(), "power_cap_kw": 70.0}
    c = {"charger_id": "CP1"}

    def say(h: Hold) -> str:
        return held_words(h.as_dict(), c, st)

    assert say(replace(PEAK, demand_charge=0.0, until=ONE)) == \
        "slowed to keep the import at the plan's 180 kW until 01:00; 40 kWh due by 06:30"
    assert say(Hold(reason="peak", planned_kw=0.0, max_kw=22.0, peak_kw=180.0,
                    demand_charge=9.0)) == "held to keep the day's peak at 180 kW (demand charge)"
    assert say(Hold(reason="v2g", planned_kw=-11.0, max_kw=22.0, until=ONE, departure=LEAVES,
                    due_kwh=30.0)) == \
        "giving back 11.0 kW to the station (V2G) until 01:00; 30 kWh due by 06:30"
    assert say(Hold(reason="schedule", planned_kw=0.0, max_kw=22.0, departure=LEAVES,
                    due_kwh=0.0)) == \
        "held by the plan: its target is planned in full by 06:30 (nothing more due)"
    assert say(Hold(reason="grid", planned_kw=5.0, max_kw=22.0, limit_kw=70.0)) == \
        "slowed to 5.0 kW by the plan: sharing the 70 kW cap in the plan"
    assert say(Hold(reason="grid", planned_kw=5.0, max_kw=22.0, limit_kw=400.0)) == \
        "slowed to 5.0 kW by the plan: sharing the 400 kW grid connection in the plan"
    assert say(Hold(reason="charger", planned_kw=0.0, max_kw=22.0, limit_kw=50.0)) == \
        "held by the plan: sharing charger CP1's 50 kW with its other connector"
    assert say(Hold(reason="price", planned_kw=0.0, max_kw=22.0, departure=LEAVES, due_kwh=30.0,
                    open_ended=True, price_now=0.31, worth=0.22)) == \
        "held by the plan: 0.31 EUR/kWh now, above the 0.22 a kWh is worth without a target; " \
        "no target set"
    assert say(Hold(reason="plan", planned_kw=3.0, max_kw=22.0, departure=LEAVES,
                    due_kwh=12.0)) == "slowed to 3.0 kW by the plan; 12 kWh due by 06:30"
    # a time more than half a day ahead on another day carries its date
    far = datetime(2026, 6, 19, 6, 30, tzinfo=UTC)
    assert say(replace(PRICE, departure=far)).endswith("42 kWh due by 06-19 06:30")


def test_status_says_the_csms_holds_a_session():
    """OCPP local controller mode: a session capped at the CSMS's limit is held by the CSMS; a
    cap below it (its measured draw) keeps the cap's words."""
    def at(idx: int, limit: float, csms: float | None) -> ConnectorView:
        return replace(conn(idx, f"aaaaaaaa-{idx}", "cap", None), limit_kw=limit,
                       csms_cap_kw=csms)

    st = station(at(1, 25.0, 25.0), at(2, 12.3, 25.0), at(3, 12.3, None))
    rows = {ln.split()[0]: ln for ln in render(st).splitlines() if ln.startswith("CP1#")}
    assert rows["CP1#1"].endswith("held by the CSMS at 25 kW")
    assert rows["CP1#2"].endswith("draws less than offered: capped near its draw")
    assert rows["CP1#3"].endswith("draws less than offered: capped near its draw")
    assert st["connectors"][0]["csms_cap_kw"] == 25.0
