"""The safety rules as functions: inputs in, the exact writes, budgets, ceilings, fallback
sizes and start-up gating out. These are the fast tests `make test-mutants` runs against
each mutant of agent/control/{apply,budget,fallbacks,startup}.py and agent/config/ceilings.py
(docs/testing.md); the cycle-stepping tests and the fault suite test the same rules end to
end."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import UTC, datetime

import pytest
from cycle_helpers import Station, settings

from agent.config.ceilings import EPS_KW, HardCeilings
from agent.control.apply import ApplyPlan, Write, execute, plan_writes
from agent.control.budget import WindowMax, budget_inputs
from agent.control.fallbacks import give_fallbacks, resize, set_fallbacks
from agent.control.startup import Phase, StartupGate
from agent.model.snapshot import BatteryState, ChargerState, ConnectorState, Snapshot
from agent.store.signals import StationConfig
from drivers.fallback_check import FallbackRefused

A, B, C = ("CP1", 1), ("CP1", 2), ("CP2", 1)


def plan(targets, current, drawing=None, *, import_kw=30.0, capacity_kw=100.0, min_kw=None,
         initial=None, deadband_kw=0.5, margin_kw=2.0) -> ApplyPlan:  # fmt: skip
    return plan_writes(targets, current, drawing or {}, min_kw or {}, initial or {},
                       import_kw=import_kw, capacity_kw=capacity_kw, margin_kw=margin_kw,
                       deadband_kw=deadband_kw)  # fmt: skip


def written(p: ApplyPlan) -> list[tuple[tuple[str, int], float, str]]:
    return [((w.charger_id, w.idx), w.kw, w.reason) for w in p.writes]


# --- apply.py: write order and headroom -------------------------------------------------


def test_decreases_go_before_increases_and_increases_share_the_confirmed_headroom() -> None:
    # 100 - 2 margin - 60 import - 0 outstanding = 38 kW headroom; asked 20 + 60 = 80.
    p = plan({A: 30.0, B: 70.0, C: 5.0}, {A: 10.0, B: 10.0, C: 20.0},
             {A: 10.0, B: 10.0, C: 20.0}, import_kw=60.0)  # fmt: skip
    assert p.headroom_kw == pytest.approx(38.0)
    assert written(p) == [(C, 5.0, "decrease"), (A, 19.5, "increase"), (B, 38.5, "increase")]
    assert p.held_back_kw == pytest.approx(80.0 - 38.0)
    assert p.writes[0].previous_kw == 20.0 and p.writes[1].previous_kw == 10.0


def test_limits_in_force_not_drawn_yet_count_against_the_headroom() -> None:
    # A holds 40 but draws 10: 30 kW may appear at any moment. 100-2-30-30 = 38.
    p = plan({B: 60.0, C: 0.0}, {A: 40.0, B: 0.0, C: None}, {A: 10.0})
    assert p.headroom_kw == pytest.approx(38.0)
    assert written(p) == [(C, 0.0, "initial"), (B, 38.0, "increase")]
    # An EV drawing more than its limit frees nothing (no negative outstanding).
    p = plan({B: 60.0}, {A: 10.0, B: 0.0}, {A: 25.0})
    assert p.headroom_kw == pytest.approx(68.0)
    # No headroom at all: nothing granted, never a negative one.
    p = plan({B: 60.0}, {B: 0.0}, import_kw=120.0)
    assert p.headroom_kw == 0.0 and p.writes == () and p.held_back_kw == 60.0


def test_all_asked_fits_is_granted_whole() -> None:
    p = plan({A: 20.0, B: 18.0}, {A: 0.0, B: 0.0}, import_kw=60.0)  # 38 headroom, 38 asked
    assert written(p) == [(A, 20.0, "increase"), (B, 18.0, "increase")]
    assert p.held_back_kw == 0.0


def test_unknown_limit_is_written_at_most_its_fallback() -> None:
    p = plan({A: 30.0, B: 3.0, C: 12.0}, {A: None, B: None, C: None},
             initial={A: 10.0, B: 10.0})  # fmt: skip
    assert written(p) == [(A, 10.0, "initial"), (B, 3.0, "initial"), (C, 0.0, "initial")]
    assert all(w.previous_kw is None for w in p.writes)


def test_deadband_minimum_power_and_stops() -> None:
    # Under the deadband: not written, either way; a stop to 0 always is.
    p = plan({A: 10.4, B: 9.6, C: 0.0}, {A: 10.0, B: 10.0, C: 0.3})
    assert written(p) == [(C, 0.0, "decrease")]
    # Exactly the deadband is written.
    p = plan({A: 10.5, B: 9.5}, {A: 10.0, B: 10.0})
    assert written(p) == [(B, 9.5, "decrease"), (A, 10.5, "increase")]
    # A connector at 0 is not started below its minimum; one already charging may creep up.
    p = plan({A: 20.0, B: 20.0}, {A: 0.0, B: 2.0}, import_kw=90.0, min_kw={A: 6.0, B: 6.0})
    assert p.headroom_kw == pytest.approx(6.0)  # 100 - 2 - 90 - 2 outstanding
    assert written(p) == [(B, 4.842, "increase")]  # 2 + 18 x 6/38; A's 3.16 < 6 waits
    # ... and is started when its share reaches the minimum exactly.
    p = plan({A: 12.0}, {A: 0.0}, import_kw=92.0, min_kw={A: 6.0})
    assert written(p) == [(A, 6.0, "increase")]
    # A granted step under the deadband is not written unless it reaches the target.
    drawn = {A: 10.0, B: 10.0}
    p = plan({A: 20.0, B: 20.0}, drawn, drawn, import_kw=97.5, min_kw={A: 1.0})
    assert p.headroom_kw == pytest.approx(0.5) and p.writes == ()
    assert p.held_back_kw == pytest.approx(20.0)
    p = plan({A: 20.0, B: 20.0}, drawn, drawn, import_kw=97.0)
    assert written(p) == [(A, 10.5, "increase"), (B, 10.5, "increase")]


def test_initial_writes_round_to_the_watt_and_missing_min_or_fallback_mean_zero() -> None:
    p = plan({A: 7.77777, B: 5.0}, {A: None, B: 0.0}, initial={A: 9.0}, import_kw=0.0)
    assert written(p) == [(A, 7.778, "initial"), (B, 5.0, "increase")]


def test_small_steps_and_missing_minimums() -> None:
    # One connector's proportional step under the deadband does not stop the next one's.
    drawn = {A: 10.0, B: 10.0}
    p = plan({A: 11.0, B: 30.0}, drawn, drawn, import_kw=93.0)  # 5 kW for 21 asked
    assert written(p) == [(B, 14.762, "increase")]
    # Exactly 1 kW asked is shared like any other amount.
    p = plan({A: 11.0}, {A: 10.0}, {A: 10.0}, import_kw=97.5)
    assert written(p) == [(A, 10.5, "increase")]
    # No minimum configured: any start over the deadband.
    p = plan({A: 0.8}, {A: 0.0})
    assert written(p) == [(A, 0.8, "increase")]


def v2g(targets, current, drawing, *, import_kw=98.0, now=10.0, fresh=True, waiting=None):  # type: ignore[no-untyped-def]
    return plan_writes(targets, current, drawing, {}, {}, import_kw=import_kw, capacity_kw=100.0,
                       margin_kw=2.0, deadband_kw=0.5, now=now, meter_fresh=fresh,
                       ends_waiting=waiting, end_timeout_s=5.0)  # fmt: skip


def test_ending_or_easing_a_discharge_is_an_increase_for_the_grid() -> None:
    # Headroom 100 - 2 - 80 = 18 kW; each end adds what the EV gives now (its draw).
    for cur, target, draw, end in ((-0.2, 0.1, -0.2, 0.0), (-0.2, 0.0, -0.2, 0.0),
                                   (-10.0, -5.0, -10.0, -5.0), (-10.0, -9.5, -10.0, -9.5)):
        p = v2g({A: target}, {A: cur}, {A: draw}, import_kw=80.0)
        assert p.writes == (Write("CP1", 1, end, cur, "v2g_end"),), (cur, target)
    # An EV that already stopped giving adds nothing: ended at once, even with no headroom.
    p = v2g({A: 0.0}, {A: -10.0}, {A: 0.0}, import_kw=120.0)
    assert p.writes == (Write("CP1", 1, 0.0, -10.0, "v2g_end"),) and p.ends_waiting == {}
    # No draw reading: counted as giving its whole limit.
    p = v2g({A: 0.0}, {A: -10.0}, {}, import_kw=80.0)
    assert p.writes == (Write("CP1", 1, 0.0, -10.0, "v2g_end"),)
    assert p.headroom_kw == pytest.approx(8.0)
    p = v2g({A: 0.0}, {A: -10.0}, {}, import_kw=90.0)
    assert p.ends_waiting == {A: 10.0}  # 8 kW: ramps to -2 instead
    assert p.writes == (Write("CP1", 1, -2.0, -10.0, "v2g_end"),) and p.headroom_kw == 0.0


def test_ends_come_out_of_headroom_first_and_leave_the_rest_to_increases() -> None:
    # 100 - 2 - 77.5 = 20.5: both ends (10 each) fit, 0.5 left for C's increase.
    p = v2g({A: 0.0, B: 0.0, C: 20.0}, {A: -10.0, B: -10.0, C: 10.0},
            {A: -10.0, B: -10.0, C: 10.0}, import_kw=77.5)  # fmt: skip
    assert p.headroom_kw == pytest.approx(0.5)
    assert written(p) == [(A, 0.0, "v2g_end"), (B, 0.0, "v2g_end"), (C, 10.5, "increase")]


def test_a_discharge_end_waits_one_cycle_then_is_forced_when_the_meter_is_stale(caplog) -> None:
    cur, draw = {A: -10.0}, {A: -10.0}
    p = v2g({A: 0.0}, cur, draw, fresh=False, now=5.0)
    assert p.writes == () and p.ends_waiting == {A: 5.0} and p.forced_ends == ()
    with caplog.at_level(logging.WARNING, logger="agent.control.apply"):
        p = v2g({A: 0.0}, cur, draw, fresh=False, now=5.25, waiting={A: 5.0})
        assert p.writes == (Write("CP1", 1, 0.0, -10.0, "v2g_end"),) and p.forced_ends == (A,)
        p = v2g({A: 0.0}, cur, draw, now=9.0, waiting={A: 5.0})  # meter fresh, 4 s: waits
        assert p.writes == () and p.ends_waiting == {A: 5.0}
        p = v2g({A: 0.0}, cur, draw, now=10.0, waiting={A: 5.0})
        assert p.writes == (Write("CP1", 1, 0.0, -10.0, "v2g_end"),) and p.forced_ends == (A,)
    assert [r.getMessage() for r in caplog.records] == [
        "V2G CP1/1: discharge ended after 0.2 s without the headroom it needs (grid meter "
        "stale; the other EVs were lowered first)",
        "V2G CP1/1: discharge ended after 5.0 s without the headroom it needs (timeout; the "
        "other EVs were lowered first)"]  # fmt: skip


def test_a_waiting_discharge_ramps_down_by_the_confirmed_headroom_over_the_deadband() -> None:
    # 100 - 2 - 97.5 = 0.5 kW: exactly the deadband, ramped.
    p = v2g({A: 0.0}, {A: -10.0}, {A: -10.0}, import_kw=97.5)
    assert p.writes == (Write("CP1", 1, -9.5, -10.0, "v2g_end"),)
    p = v2g({A: 0.0}, {A: -10.0}, {A: -10.0}, import_kw=97.6)
    assert p.writes == () and p.ends_waiting == {A: 10.0}


class Recorder:
    """A charger's limit register, recording the order writes arrive in."""

    def __init__(self, cid: str, log: list, fail: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        self.cid, self.log, self.fail = cid, log, fail

    async def set_limit(self, idx: int, kw: float) -> None:
        await asyncio.sleep(0)
        if idx in self.fail:
            raise OSError("no answer")
        self.log.append((self.cid, idx, kw))


def test_execute_sends_every_decrease_before_any_end_or_increase(caplog) -> None:
    order: list = []
    chargers = {"CP1": Recorder("CP1", order, fail={2}), "CP2": Recorder("CP2", order)}
    p = ApplyPlan(writes=(
        Write("CP1", 1, 30.0, 10.0, "increase"), Write("CP2", 1, 5.0, 20.0, "decrease"),
        Write("CP1", 3, 0.0, -5.0, "v2g_end"), Write("CP1", 2, 3.0, None, "initial"),
        Write("CP1", 4, 1.0, 2.0, "decrease")), headroom_kw=0.0, held_back_kw=0.0)  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="agent.control.apply"):
        ok = asyncio.run(execute(p, chargers))
    assert order[:2] in ([("CP2", 1, 5.0), ("CP1", 4, 1.0)], [("CP1", 4, 1.0), ("CP2", 1, 5.0)])
    assert order[2:] == [("CP1", 3, 0.0), ("CP1", 1, 30.0)]
    assert ok == {("CP1", 1): True, ("CP1", 2): False, ("CP1", 3): True, ("CP1", 4): True,
                  ("CP2", 1): True}  # fmt: skip
    assert [r.getMessage() for r in caplog.records] == ["limit write CP1/2=3.00 kW failed: no answer"]


def test_execute_reports_failures_per_episode_to_the_fault_log(caplog) -> None:
    from agent.control.episodes import FaultLog

    t = [0.0]
    faults = FaultLog(logging.getLogger("test.episodes"), lambda: t[0])
    p = ApplyPlan(writes=(Write("CP1", 1, 3.0, 4.0, "decrease"),
                          Write("CP1", 2, 3.0, 4.0, "decrease")),
                  headroom_kw=0.0, held_back_kw=0.0)  # fmt: skip
    failing = Recorder("CP1", [], fail={2})
    with caplog.at_level(logging.INFO):
        for _ in range(3):  # one episode, logged once, not per write
            ok = asyncio.run(execute(p, {"CP1": failing}, faults))
        t[0] = 12.0
        failing.fail = set()
        assert asyncio.run(execute(p, {"CP1": failing}, faults)) == {("CP1", 1): True,
                                                                    ("CP1", 2): True}  # fmt: skip
    assert ok == {("CP1", 1): True, ("CP1", 2): False}
    messages = [(r.name, r.getMessage()) for r in caplog.records]
    assert messages[0] == ("test.episodes", "limit write CP1/2 failed: no answer")
    assert len(messages) == 2 and messages[1][1].startswith("limit write CP1/2 failed: recovered")


# --- budget.py: degraded budgets ---------------------------------------------------------


def snap(t=10.0, grid=50.0, pv=None, battery=None, chargers=(), inverter_battery=None):  # type: ignore[no-untyped-def]
    return Snapshot(t, datetime(2026, 1, 1, tzinfo=UTC), grid, pv, battery, tuple(chargers),
                    inverter_battery_kw=inverter_battery)  # fmt: skip


def charger(cid, reachable, *draws):  # type: ignore[no-untyped-def]
    return ChargerState(cid, reachable, tuple(ConnectorState(cid, i + 1, "C", kw, 0.0)
                                              for i, kw in enumerate(draws)))  # fmt: skip


def test_window_max_keeps_the_highest_value_of_the_window_only() -> None:
    w = WindowMax(10.0)
    assert w.max(0.0) is None
    w.add(0.0, 5.0)
    w.add(1.0, 8.0)
    w.add(2.0, 3.0)
    assert w.max(2.0) == 8.0
    assert w.max(11.0) == 8.0  # 1.0 is exactly the window's edge: still in
    assert w.max(11.5) == 3.0
    w.add(13.0, 3.0)
    assert w.max(12.5) == 3.0 and w.max(23.0) == 3.0 and w.max(23.5) is None


def test_fresh_meter_measures_the_base_load() -> None:
    bat = BatteryState(soc=120.0, max_charge_kw=50.0, max_discharge_kw=-3.0, power_kw=6.0)
    hist = WindowMax(60.0)
    b = budget_inputs(snap(grid=40.0, pv=4.0, battery=bat,
                           chargers=[charger("CP1", True, 10.0, 5.0)]),
                      hist, 15.0, {}, {}, (20.0, 30.0, 25.0))  # fmt: skip
    assert b.measured_base_kw == pytest.approx(40.0 - 15.0 + 4.0 + 6.0)
    assert b.base_load_kw == pytest.approx(35.0) and b.pv_kw == 4.0 and b.reserved_kw == 0.0
    assert b.battery == {"soc": 100.0, "minSoc": 20.0, "maxChargePower": 30.0,
                         "maxDischargePower": 0.0}  # fmt: skip
    assert b.modes == frozenset()
    assert hist.max(10.0) == pytest.approx(35.0)
    # A negative measurement (an EV ramping up before the meter sees it) counts as none.
    b = budget_inputs(snap(grid=0.5, chargers=[charger("CP1", True, 3.0)]), WindowMax(60.0),
                      15.0, {}, {("CP1", 1): 0.0}, None)  # fmt: skip
    assert b.base_load_kw == 0.0 and b.battery is None and b.modes == frozenset()
    bat = BatteryState(soc=-5.0, max_charge_kw=-1.0, max_discharge_kw=10.0, power_kw=0.0)
    b = budget_inputs(snap(battery=bat), WindowMax(60.0), 15.0, {}, {}, (20.0, 30.0, 25.0))
    assert b.battery == {"soc": 0.0, "minSoc": 20.0, "maxChargePower": 0.0,
                         "maxDischargePower": 10.0}  # fmt: skip


def test_stale_meter_assumes_the_higher_of_seen_and_pessimistic_and_no_pv_or_battery() -> None:
    hist = WindowMax(60.0)
    hist.add(0.0, 25.0)
    bat = BatteryState(soc=50.0, max_charge_kw=30.0, max_discharge_kw=30.0, power_kw=10.0)
    b = budget_inputs(snap(grid=None, pv=8.0, battery=bat), hist, 15.0, {}, {}, (20.0, 30.0, 30.0))
    assert b.base_load_kw == 25.0 and b.pv_kw == 0.0 and b.battery is None
    assert b.measured_base_kw is None and b.modes == frozenset({"grid_meter_stale"})
    b = budget_inputs(snap(grid=None), WindowMax(60.0), 15.0, {}, {}, None)
    assert b.base_load_kw == 15.0
    hist = WindowMax(60.0)
    hist.add(0.0, 5.0)
    assert budget_inputs(snap(grid=None), hist, 15.0, {}, {}, None).base_load_kw == 15.0


def test_unreachable_charger_reserves_its_last_limits_and_a_stale_bms_counts_nothing() -> None:
    limits = {("CP2", 1): 11.0, ("CP2", 2): None, ("CP1", 1): 40.0}
    power = {("CP2", 1): 9.0, ("CP2", 2): 4.0}
    b = budget_inputs(snap(grid=60.0, chargers=[charger("CP1", True, 20.0),
                                                charger("CP2", False, 0.0, 0.0, 0.0)],
                           inverter_battery=5.0),
                      WindowMax(60.0), 15.0, limits, power, (20.0, 30.0, 30.0))  # fmt: skip
    assert b.reserved_kw == 11.0
    # 60 - 20 reachable - 13 unreachable + 5 inverter battery = 32 measured, + 11 reserved
    assert b.measured_base_kw == pytest.approx(32.0)
    assert b.base_load_kw == pytest.approx(43.0)
    assert b.modes == frozenset({"charger_unreachable:CP2", "bms_stale"})
    assert b.battery is None


def test_meter_contradicting_the_chargers_gets_the_safe_budget() -> None:
    # 40 kW drawn by the EVs (steady: last cycle too) and the meter says 40 kW export.
    last = {("CP1", 1): 40.0}
    b = budget_inputs(snap(grid=-40.0, chargers=[charger("CP1", True, 40.0)]), WindowMax(60.0),
                      15.0, {}, last, None)  # fmt: skip
    assert b.modes == frozenset({"grid_meter_implausible"})
    assert b.base_load_kw == 15.0 and b.measured_base_kw is None
    # A ramp not there last cycle cannot contradict it.
    b = budget_inputs(snap(grid=5.0, chargers=[charger("CP1", True, 40.0)]), WindowMax(60.0),
                      15.0, {}, {("CP1", 1): 0.0}, None)  # fmt: skip
    assert b.modes == frozenset() and b.measured_base_kw == 0.0


def test_a_silent_pv_inverter_makes_a_low_grid_reading_no_evidence_of_a_wrong_sign() -> None:
    # 40 kW drawn, the meter reads 5 kW: PV may cover the rest when an inverter is configured
    # but silent (pv None); without a PV inverter the same reading is a contradiction.
    s, last = snap(grid=5.0, chargers=[charger("CP1", True, 40.0)]), {("CP1", 1): 40.0}
    assert budget_inputs(s, WindowMax(60.0), 15.0, {}, last, None,
                         pv_expected=True).modes == frozenset()
    assert budget_inputs(s, WindowMax(60.0), 15.0, {}, last, None,
                         pv_expected=False).modes == frozenset({"grid_meter_implausible"})


def test_the_sign_check_counts_every_draw_and_nothing_else() -> None:
    def modes(grid, chargers=(), last=None, limits=None, pv=None):  # type: ignore[no-untyped-def]
        return budget_inputs(snap(grid=grid, pv=pv, chargers=chargers), WindowMax(60.0), 15.0,
                             limits or {}, last or {}, None).modes  # fmt: skip

    # Nothing drawn, no PV: up to 3 kW of export is sampling skew, more is a wrong sign.
    assert modes(-2.5) == frozenset()
    assert modes(-3.5) == frozenset({"grid_meter_implausible"})
    # Two chargers' steady draws add up (40 kW: 34 kW is the lowest plausible import).
    both = [charger("CP1", True, 20.0), charger("CP2", True, 20.0)]
    last = {("CP1", 1): 20.0, ("CP2", 1): 20.0}
    assert modes(20.0, both, last) == frozenset({"grid_meter_implausible"})
    assert modes(32.0, both, last) == frozenset()
    # An unreachable charger's last draw counts too.
    gone = [charger("CP2", False, 0.0)]
    assert modes(-40.0, gone, {("CP2", 1): 40.0}) == frozenset(
        {"grid_meter_implausible", "charger_unreachable:CP2"})  # fmt: skip


def test_no_base_load_seen_and_none_configured_is_zero() -> None:
    b = budget_inputs(snap(grid=None), WindowMax(60.0), 0.0, {}, {}, None)
    assert b.base_load_kw == 0.0


# --- fallbacks.py: fallback sizing --------------------------------------------------------


def test_resize_edges() -> None:
    assert resize({"a": 10.0, "b": 10.0}, {"b": 10.0}) == {"a": 10.0}  # no excess
    assert resize({"a": 10.0, "b": 10.0}, {"b": 20.0}) == {"a": 0.0}  # all of a's share
    assert resize({"a": 10.0, "b": 10.0}, {"b": 20.5}) is None
    assert resize({"a": 0.0, "b": 10.0}, {"b": 10.0}) == {"a": 0.0}  # room 0, no excess
    assert resize({"b": 10.0}, {"b": 10.0}) == {}
    assert resize({"a": 0.5, "b": 10.0}, {"b": 10.2}) == pytest.approx({"a": 0.3})
    assert resize({"a": 10.0, "b": 10.0, "c": 10.0}, {"b": 8.0, "c": 14.0}) == pytest.approx(
        {"a": 8.0})  # fmt: skip


class FallbackCharger:
    """A charger's fallback register; one whose own setting is fixed refuses the share."""

    def __init__(self, fixed_kw: float | None = None, broken: bool = False,
                 unknown: bool = False) -> None:  # fmt: skip
        self.fixed_kw, self.broken, self.unknown = fixed_kw, broken, unknown
        self.set: list[tuple[float, float]] = []

    async def set_fallback(self, kw: float, timeout_s: float) -> None:
        if self.broken:
            raise OSError("timeout")
        if self.unknown:
            raise FallbackRefused("safe current unreadable")
        if self.fixed_kw is not None and kw < self.fixed_kw:
            raise FallbackRefused("safe current 32 A is above the share", self.fixed_kw)
        self.set.append((kw, timeout_s))


def test_fallbacks_are_sized_around_a_fixed_one(caplog) -> None:
    # CP2 falls back to 11 kW per connector whatever it is told: 22 kW, 12 above its share.
    chargers = {"CP1": FallbackCharger(), "CP2": FallbackCharger(fixed_kw=11.0)}
    done: list[str] = []
    with caplog.at_level(logging.WARNING, logger="agent.control.fallbacks"):
        lowered = asyncio.run(set_fallbacks(chargers, {"CP1": 40.0, "CP2": 10.0},
                                            {"CP1": 2, "CP2": 2}, 7.0, done.append))  # fmt: skip
    assert lowered == pytest.approx({"CP1": 28.0})
    assert chargers["CP1"].set == [(20.0, 7.0), (14.0, 7.0)]
    assert done == ["CP1", "CP1"]
    assert [r.getMessage() for r in caplog.records] == [
        "charger CP2: safe current 32 A is above the share; the other chargers' fallbacks are "
        "lowered to make room"]


def test_fallbacks_that_cannot_be_kept_are_logged_as_errors(caplog) -> None:
    for chargers in ({"CP1": FallbackCharger(), "CP2": FallbackCharger(fixed_kw=60.0)},
                     {"CP1": FallbackCharger(), "CP2": FallbackCharger(unknown=True)}):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="agent.control.fallbacks"):
            lowered = asyncio.run(set_fallbacks(chargers, {"CP1": 40.0, "CP2": 10.0},
                                                {"CP1": 2, "CP2": 1}, 7.0, lambda c: None))  # fmt: skip
        assert lowered == {}
        assert chargers["CP1"].set == [(20.0, 7.0)]
        assert [r.levelno for r in caplog.records] == [logging.ERROR]
        assert caplog.records[0].getMessage().startswith(
            "charger CP2: the station limit cannot be promised if the agent stops: safe")
    chargers = {"CP1": FallbackCharger(broken=True), "CP2": FallbackCharger()}
    done: list[str] = []
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="agent.control.fallbacks"):
        assert asyncio.run(set_fallbacks(chargers, {"CP1": 40.0, "CP2": 10.0},
                                         {"CP1": 2, "CP2": 1}, 7.0, done.append)) == {}  # fmt: skip
    assert done == ["CP2"] and chargers["CP2"].set == [(10.0, 7.0)]
    assert [r.getMessage() for r in caplog.records] == [
        "charger CP1: fallback limit not set: timeout"]


def test_give_fallbacks_makes_the_lowered_shares_the_controllers_safe_limits() -> None:
    st = Station()  # CP1 2 x 50 kW, CP2 1 x 50 kW: fallback shares 40 kW each (settings)
    devices = {"CP1": FallbackCharger(), "CP2": FallbackCharger(fixed_kw=50.0)}
    done: list[str] = []
    asyncio.run(give_fallbacks(devices, st.controller, st.cfg, done.append))
    assert devices["CP1"].set == [(20.0, 10.0), (15.0, 10.0)]  # 80 - 50 fixed = 30 left
    assert done == ["CP1", "CP1"]
    assert st.controller.fallback_per_connector == {("CP1", 1): 15.0, ("CP1", 2): 15.0,
                                                    ("CP2", 1): 40.0}  # fmt: skip
    st = Station()
    devices = {"CP1": FallbackCharger(), "CP2": FallbackCharger()}
    asyncio.run(give_fallbacks(devices, st.controller, st.cfg, done.append))
    assert devices["CP1"].set == [(20.0, 10.0)] and devices["CP2"].set == [(40.0, 10.0)]
    assert st.controller.fallback_per_connector == {("CP1", 1): 20.0, ("CP1", 2): 20.0,
                                                    ("CP2", 1): 40.0}  # fmt: skip


# --- ceilings.py --------------------------------------------------------------------------


def station_config(capacity: float, cp1: float = 50.0, cp2: float = 50.0) -> StationConfig:
    return StationConfig.model_validate({"stationId": "T1", "gridCapacity": capacity,
                                         "chargers": [{"id": "CP1", "maxPower": cp1, "connectors": 2},
                                                      {"id": "CP2", "maxPower": cp2, "connectors": 1},
                                                      {"id": "CP9", "maxPower": 900.0, "connectors": 1}]})  # fmt: skip


def test_hard_ceilings_come_from_the_file_and_refuse_any_raise() -> None:
    ceilings = HardCeilings.of(settings(station={"chargers": [
        {"id": "CP1", "device": "cp1", "max_power_kw": 50.0, "connectors": 2},
        {"id": "CP2", "device": "cp2", "max_power_kw": 22.0, "connectors": 1}]}))  # fmt: skip
    assert ceilings == HardCeilings(100.0, {"CP1": 50.0, "CP2": 22.0})
    ceilings.check(station_config(100.0, 50.0, 22.0))  # equal: allowed (CP9 is not rated here)
    ceilings.check(station_config(40.0, 10.0, 5.0))  # lower: allowed
    with pytest.raises(ValueError) as e:
        ceilings.check(station_config(100.01))
    assert str(e.value) == ("config.gridCapacity: 100.01 kW is above this station's grid "
                            "connection, 100 kW (station.grid_capacity_kw in the settings "
                            "file); it may only be lowered")  # fmt: skip
    with pytest.raises(ValueError) as e:
        ceilings.check(station_config(90.0, 50.0, 22.5))
    assert str(e.value) == ("config.chargers[1].maxPower: 22.5 kW is above charger 'CP2''s "
                            "rating, 22 kW (station.chargers[].max_power_kw in the settings "
                            "file); it may only be lowered")  # fmt: skip
    with pytest.raises(ValueError, match=r"^config\.chargers\[0\]\.maxPower"):
        ceilings.check(station_config(90.0, 50.001, 22.0))
    ceilings.check(station_config(100.0 + EPS_KW, 50.0 + EPS_KW, 22.0))  # float noise


# --- startup.py: the start-up gate --------------------------------------------------------


def decision(station: Station, *, writes=(), battery=None, setpoint=None, grid=50.0,
             unreachable=(), t=1.0):  # type: ignore[no-untyped-def]
    d = station.cycle()
    s = dataclasses.replace(d.snapshot, t=t, grid_kw=grid, battery=battery, chargers=tuple(
        dataclasses.replace(ch, reachable=ch.id not in unreachable) for ch in d.snapshot.chargers))
    p = ApplyPlan(writes=tuple(writes), headroom_kw=9.0, held_back_kw=1.5,
                  ends_waiting={A: 0.5})  # fmt: skip
    return dataclasses.replace(d, snapshot=s, plan=p, heartbeats=("CP2",),
                               battery_setpoint_kw=setpoint,
                               phase_switches=((A, 1),))  # fmt: skip


WRITES = (Write("CP1", 1, 5.0, 10.0, "decrease"), Write("CP1", 2, 4.0, None, "initial"),
          Write("CP2", 1, 0.0, -3.0, "v2g_end"), Write("CP1", 1, 12.0, 10.0, "increase"))  # fmt: skip


def test_nothing_is_written_until_meter_bms_and_chargers_were_read(caplog) -> None:
    st = Station()
    bat = BatteryState(soc=50.0, max_charge_kw=30.0, max_discharge_kw=30.0, power_kw=8.0)
    gate = StartupGate(has_battery=True, timeout_s=5.0)
    d = decision(st, writes=WRITES, battery=None, setpoint=10.0, grid=None,
                 unreachable=("CP2",), t=100.0)  # fmt: skip
    assert gate.missing(d.snapshot) == ["grid meter", "BMS", "charger CP2"]
    held = gate.gate(d)
    assert gate.phase is Phase.READING
    assert held.plan == ApplyPlan(writes=(), headroom_kw=0.0, held_back_kw=1.5,
                                  ends_waiting={A: 0.5})  # fmt: skip
    assert held.heartbeats == () and held.battery_setpoint_kw is None
    assert held.phase_switches == ()  # a phase switch register is a write too
    # Still missing the BMS just before the timeout: held.
    held = gate.gate(decision(st, writes=WRITES, setpoint=10.0, t=104.99))
    assert gate.phase is Phase.READING and held.plan.writes == ()
    # Everything read: one cycle of decreases only, then the controller's plan as it is.
    with caplog.at_level(logging.INFO, logger="agent.control.startup"):
        first = gate.gate(decision(st, writes=WRITES, battery=bat, setpoint=8.0, t=105.0))
        assert gate.phase is Phase.LOWERING
        later = decision(st, writes=WRITES, setpoint=-5.0, t=105.1)
        assert gate.gate(later) is later and gate.phase is Phase.RUNNING
    assert [r.getMessage() for r in caplog.records] == [
        "start-up: meter, BMS and chargers read; first writes lower only",
        "start-up: done, control running"]
    assert first.plan.writes == WRITES[:2]
    assert first.plan.held_back_kw == pytest.approx(1.5 + 3.0 + 2.0)
    assert first.plan.headroom_kw == 9.0 and first.heartbeats == ("CP2",)
    assert first.battery_setpoint_kw == 8.0  # as much discharge as now: kept
    # a phase switch waits for the control's own rules (it follows a limit of 0 in force)
    assert first.phase_switches == () and later.phase_switches == ((A, 1),)
    assert gate.gate(later) is later


def test_after_the_timeout_the_degraded_budget_writes_lower_only(caplog) -> None:
    st = Station()
    gate = StartupGate(has_battery=True, timeout_s=5.0)
    assert gate.gate(decision(st, writes=WRITES, grid=None, t=10.0)).plan.writes == ()
    with caplog.at_level(logging.INFO, logger="agent.control.startup"):
        d = gate.gate(decision(st, writes=WRITES, grid=None, setpoint=3.0, t=15.0))
    assert gate.phase is Phase.LOWERING
    assert d.plan.writes == WRITES[:2] and d.battery_setpoint_kw is None  # no BMS reading
    assert "start-up: grid meter, BMS not read after 5.0 s; writing under the degraded " \
           "budget" in caplog.text


def test_a_battery_setpoint_at_start_only_if_it_discharges_at_least_as_much() -> None:
    bat = BatteryState(soc=50.0, max_charge_kw=30.0, max_discharge_kw=30.0, power_kw=8.0)
    for setpoint, kept in ((7.9, None), (8.0, 8.0), (12.0, 12.0), (None, None)):
        gate = StartupGate(has_battery=True, timeout_s=5.0)
        d = gate.gate(decision(Station(), battery=bat, setpoint=setpoint))
        assert gate.phase is Phase.LOWERING and d.battery_setpoint_kw == kept
    gate = StartupGate(has_battery=False, timeout_s=5.0)
    d = decision(Station(), writes=WRITES, setpoint=4.0)
    assert gate.missing(d.snapshot) == []
    assert gate.gate(d).battery_setpoint_kw is None  # no battery reading: nothing to lower
