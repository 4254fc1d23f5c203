"""V2G cycle by cycle: hand-made snapshots in, the controller's limit writes out.

A bidirectional charger (CP1) with a permitted session the plan discharges, and a plain
charger (CP2) with an EV that wants more than the grid gives: the discharge is written as a
negative limit, counts for CP2 only once measured with a fresh meter, stops at the SoC floor
and energy budget, and yields to the departure guard. Ending a discharge raises the import,
so it takes two phases: `v2g.session.stop` (or any planned end) lowers CP2 in the next
cycle, and the discharge ends (or ramps down) only once the meter shows the headroom, at
the latest `[v2g] end_timeout_s` later, or one cycle later when the meter is stale.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta

import pytest
from cycle_helpers import Station, settings

from agent.control.apply import plan_writes
from agent.control.controller import Controller
from agent.control.decision import Decision
from agent.control.sessions import SessionTracker
from agent.control.v2g import V2gDispatch, V2gSettings
from agent.model.snapshot import Snapshot
from agent.store.signals import Signals, V2gRequest
from allocator.guidance import Guidance

V2G = ("CP1", 1)
OTHER = ("CP2", 1)
CAPACITY = 100.0


def v2g_settings():  # type: ignore[no-untyped-def]
    return settings(station={"chargers": [
        {"id": "CP1", "device": "cp1", "max_power_kw": 50.0, "connectors": 2, "v2g": True},
        {"id": "CP2", "device": "cp2", "max_power_kw": 50.0, "connectors": 1},
    ]})  # fmt: skip


@dataclass
class V2gStation(Station):
    """The cycle harness with a planner stand-in (`planned`: session -> kW, < 0 discharges),
    cloud signals and the EV's SoC as the charger reports it."""

    planned: dict[str, float] = field(default_factory=dict)
    soc: dict[tuple[str, int], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.signals = Signals(self.db)
        self.v2g = V2gDispatch(self.cfg.v2g, self.db, self.signals)
        self.controller = Controller(
            self.cfg, SessionTracker(self.db, self.clock), signals=self.signals,
            guide=self.guide, v2g=self.v2g,
        )  # fmt: skip

    def guide(self, ts):  # type: ignore[no-untyped-def]
        if not self.planned:
            return None
        return Guidance(import_cap_kw=CAPACITY, peak_kw=CAPACITY, peak_cap_kw=CAPACITY,
                        billing_h=0.25, battery_kw=0.0, session_kw=dict(self.planned))

    def snapshot(self) -> Snapshot:
        snap = super().snapshot()
        chargers = tuple(
            replace(ch, connectors=tuple(
                replace(c, soc_pct=self.soc.get((c.charger_id, c.idx))) for c in ch.connectors))
            for ch in snap.chargers
        )  # fmt: skip
        return replace(snap, chargers=chargers)

    def run_meters(self, seconds: float) -> None:
        # The charger's session counter counts charging only; discharge is V2G's own tally.
        before = dict(self.energy)
        super().run_meters(seconds)
        for key, kwh in self.energy.items():
            if self.states.get(key) in ("B", "C", "D"):
                self.energy[key] = max(kwh, before.get(key, 0.0))

    def permit(self, session_id: str, **kw) -> None:  # type: ignore[no-untyped-def]
        self.signals.add_v2g_request(V2gRequest(id=f"r-{session_id}", session_id=session_id,
                                                start=self.clock.now(), **kw))

    def steady(self, n: int = 12) -> list[Decision]:
        out = []
        for _ in range(n):
            out.append(self.cycle(follow=True))
            assert self.grid_kw() <= CAPACITY + 1e-6
        return out


def discharging_station(**permit) -> tuple[V2gStation, str, str]:  # type: ignore[no-untyped-def]
    st = V2gStation(cfg=v2g_settings(), base_kw=65.0)
    st.plug(V2G)
    st.plug(OTHER)
    st.cycle()
    sid, other = st.session_id(V2G), st.session_id(OTHER)
    st.planned = {sid: -20.0}
    st.permit(sid, power_kw=permit.pop("power_kw", 15.0), **permit)
    return st, sid, other


def test_plan_discharge_is_a_negative_limit_and_counts_once_measured() -> None:
    st, sid, other = discharging_station()
    d = st.cycle()  # the plan's 20 kW, capped at the request's 15 kW
    w = next(w for w in d.plan.writes if (w.charger_id, w.idx) == V2G)
    assert (w.kw, w.reason) == (-15.0, "decrease")
    assert d.v2g.discharge_kw == {sid: 15.0}
    assert d.v2g.supply_kw == 0.0  # commanded, not yet measured: nothing for CP2 from it
    assert d.targets[OTHER] == pytest.approx(CAPACITY - 2.0 - 65.0)
    st.draw[V2G] = -15.0  # the EV follows
    d = st.cycle()
    assert d.v2g.supply_kw == pytest.approx(15.0)
    assert d.targets[OTHER] == pytest.approx(CAPACITY - 2.0 - 65.0 + 15.0)
    assert d.request["pvPower"] == pytest.approx(15.0)  # counted like PV, as the kernel saw it
    st.steady()
    assert st.limits[V2G] == -15.0 and st.limits[OTHER] == pytest.approx(48.0)
    assert st.grid_kw() == pytest.approx(65.0 + 48.0 - 15.0)


def test_measured_discharge_below_the_command_counts_only_what_is_measured() -> None:
    st, sid, _ = discharging_station()
    st.cycle()
    st.draw[V2G] = -6.0  # the EV gives less than asked
    d = st.cycle()
    assert d.v2g.supply_kw == pytest.approx(6.0)
    assert d.targets[OTHER] == pytest.approx(CAPACITY - 2.0 - 65.0 + 6.0)


def test_stale_meter_counts_no_v2g() -> None:
    st, sid, _ = discharging_station()
    st.steady()
    st.grid_stale = True
    d = st.cycle()
    assert d.v2g.supply_kw == 0.0
    assert d.v2g.discharge_kw == {sid: 15.0}  # discharging lowers the import: it goes on
    assert "grid_meter_stale" in d.budget.modes
    assert d.targets[OTHER] <= CAPACITY - 2.0 - 65.0 + 1e-6


def writes(d: Decision) -> list[tuple[str, int, float, str]]:
    return [(w.charger_id, w.idx, w.kw, w.reason) for w in d.plan.writes]


def test_v2g_stop_lowers_the_others_first_and_ends_once_the_meter_shows_the_headroom() -> None:
    st, sid, _ = discharging_station()
    st.steady()
    assert st.limits[V2G] == -15.0
    st.signals.stop_v2g(lambda r: r.session_id == sid, st.clock.now())
    d = st.cycle()
    # Phase 1 (the next cycle): CP2 lowered as if the discharge were gone; the discharge holds.
    assert writes(d) == [("CP2", 1, pytest.approx(33.0), "decrease")]
    assert d.v2g.discharge_kw == {} and d.v2g.supply_kw == 0.0
    assert d.v2g.held[sid] == "no V2G permission"
    assert d.plan.ends_waiting == {V2G: d.snapshot.t}
    assert st.limits[V2G] == -15.0
    d = st.cycle()  # CP2 has not followed yet: no headroom, nothing written
    assert writes(d) == [] and st.limits[V2G] == -15.0
    st.draw[OTHER] = 33.0  # CP2 follows: the meter shows 15 kW of headroom
    assert st.grid_kw() == pytest.approx(CAPACITY - 2.0 - 15.0)
    d = st.cycle()  # phase 2: the end, out of that headroom
    assert writes(d) == [("CP1", 1, 0.0, "v2g_end")]
    assert d.plan.ends_waiting == {} and d.plan.forced_ends == ()
    st.draw[V2G] = 0.0  # the discharge ends
    assert st.grid_kw() <= CAPACITY - 2.0 + 1e-9


def test_a_discharge_ramps_down_by_the_headroom_the_meter_confirms() -> None:
    st, sid, _ = discharging_station()
    st.steady()
    st.planned = {sid: 0.0}  # the plan ends it
    assert writes(st.cycle()) == [("CP2", 1, pytest.approx(33.0), "decrease")]
    st.draw[OTHER] = 40.0  # an AC EV follows slowly: 8 kW of the 15 shown so far
    # Until it has followed (limit_follow_s = 1.5 s, 6 cycles) it counts at its old 48 kW:
    # the meter's 8 kW are not handed on before the charger is known to have come down.
    for _ in range(5):
        d = st.cycle()
        assert writes(d) == [] and V2G in d.plan.ends_waiting
    d = st.cycle()
    assert writes(d) == [("CP1", 1, -7.0, "v2g_end")] and V2G in d.plan.ends_waiting
    # The DC charger has not reacted yet: its limit's 8 kW above the draw are outstanding,
    # so the same headroom is not granted twice.
    assert writes(st.cycle()) == []
    st.draw[V2G] = -7.0
    assert writes(st.cycle()) == []  # the meter shows it consumed: nothing left
    st.draw[OTHER] = 33.0
    d = st.cycle()
    assert writes(d) == [("CP1", 1, 0.0, "v2g_end")] and d.plan.ends_waiting == {}
    st.draw[V2G] = 0.0
    assert st.grid_kw() <= CAPACITY - 2.0 + 1e-9


def test_stale_meter_ends_the_discharge_one_cycle_after_the_others_were_lowered() -> None:
    st, sid, _ = discharging_station()
    st.steady()
    st.signals.stop_v2g(lambda r: r.session_id == sid, st.clock.now())
    d = st.cycle()
    assert writes(d) == [("CP2", 1, pytest.approx(33.0), "decrease")]
    st.grid_stale = True  # no headroom can be confirmed from here on
    d = st.cycle()
    assert ("CP1", 1, 0.0, "v2g_end") in writes(d)
    assert d.plan.forced_ends == (V2G,) and d.plan.ends_waiting == {}
    assert st.limits[OTHER] <= 33.0 + 1e-9  # CP2's limit reflects the end already


def test_an_end_without_headroom_is_forced_after_the_timeout_only() -> None:
    cfg = v2g_settings().model_copy(update={"v2g": V2gSettings(end_timeout_s=2.0)})
    st = V2gStation(cfg=cfg, base_kw=65.0)
    st.plug(V2G)
    st.plug(OTHER)
    st.cycle()
    sid = st.session_id(V2G)
    st.planned = {sid: -20.0}
    st.permit(sid, power_kw=15.0)
    st.steady()
    st.signals.stop_v2g(lambda r: r.session_id == sid, st.clock.now())
    first = st.cycle()
    assert writes(first) == [("CP2", 1, pytest.approx(33.0), "decrease")]
    # CP2's EV ignores its lower limit (a stuck charger): the headroom never shows.
    for _ in range(7):
        d = st.cycle()
        assert writes(d) == [] and st.limits[V2G] == -15.0
        assert d.plan.ends_waiting == {V2G: first.snapshot.t}
    d = st.cycle()  # 2.0 s after the end became due
    assert d.snapshot.t - first.snapshot.t == pytest.approx(2.0)
    assert writes(d) == [("CP1", 1, 0.0, "v2g_end")] and d.plan.forced_ends == (V2G,)


def test_discharge_resumed_before_its_end_forgets_the_wait() -> None:
    st, sid, _ = discharging_station()
    st.steady()
    st.planned = {sid: 0.0}
    assert st.cycle().plan.ends_waiting == {V2G: pytest.approx(st.clock.monotonic())}
    st.planned = {sid: -20.0}  # the plan discharges again before the end was written
    d = st.cycle()
    assert d.plan.ends_waiting == {} and st.controller.ends_waiting == {}
    assert d.v2g.discharge_kw == {sid: 15.0}


def test_ending_a_discharge_comes_out_of_headroom_before_other_increases() -> None:
    plan = plan_writes(
        {V2G: 0.0, OTHER: 40.0}, {V2G: -15.0, OTHER: 30.0}, {V2G: -15.0, OTHER: 30.0},
        {V2G: 4.14, OTHER: 4.14}, {}, import_kw=80.0, capacity_kw=CAPACITY, margin_kw=2.0,
        deadband_kw=0.5,
    )  # fmt: skip
    # 100 - 2 - 80 - 15 the ending discharge adds: 3 kW left for CP2's increase, sent last.
    assert plan.headroom_kw == pytest.approx(3.0)
    assert [(w.charger_id, w.kw, w.reason) for w in plan.writes] == [
        ("CP1", 0.0, "v2g_end"), ("CP2", 33.0, "increase")]
    # A discharge that becomes charging stops at 0 first; charging comes from headroom later.
    plan = plan_writes({V2G: 10.0}, {V2G: -15.0}, {V2G: -15.0}, {V2G: 4.14}, {},
                       import_kw=50.0, capacity_kw=CAPACITY, margin_kw=2.0, deadband_kw=0.5)
    assert [(w.kw, w.reason) for w in plan.writes] == [(0.0, "v2g_end")]
    # Too little headroom: the discharge ramps down by all of it and CP2 gets nothing yet.
    plan = plan_writes(
        {V2G: 0.0, OTHER: 40.0}, {V2G: -15.0, OTHER: 30.0}, {V2G: -15.0, OTHER: 30.0},
        {V2G: 4.14, OTHER: 4.14}, {}, import_kw=90.0, capacity_kw=CAPACITY, margin_kw=2.0,
        deadband_kw=0.5, now=10.0, ends_waiting={V2G: 9.0},
    )  # fmt: skip
    assert [(w.charger_id, w.kw, w.reason) for w in plan.writes] == [("CP1", -7.0, "v2g_end")]
    assert plan.ends_waiting == {V2G: 9.0} and plan.held_back_kw == pytest.approx(10.0)


def test_discharge_stops_at_the_soc_floor_and_at_the_energy_budget() -> None:
    st, sid, _ = discharging_station(min_soc_pct=30.0)
    st.soc[V2G] = 45.0
    st.steady(4)
    assert st.limits[V2G] == -15.0
    st.soc[V2G] = 30.0
    d = st.cycle(follow=True)
    assert d.v2g.held[sid] == "at the V2G SoC floor"
    st.cycle(follow=True)  # CP2 followed its decrease: the end comes out of that headroom
    assert st.limits[V2G] == 0.0

    st, sid, _ = discharging_station(energy_kwh=0.01)  # battery side: 0.009 kWh delivered
    cycles = st.steady(20)
    stopped = next(i for i, d in enumerate(cycles) if sid in d.v2g.held)
    assert cycles[stopped].v2g.held[sid] == "V2G energy budget used"
    assert 6 <= stopped <= 12  # 0.009 kWh at 15 kW is 2.2 s of 0.25 s cycles
    # The end waits a cycle for CP2's decrease to show: at most two cycles at 15 kW past it.
    assert 0.009 - 0.0011 <= st.v2g.discharged_kwh(sid) <= 0.009 + 2 * 15.0 * 0.25 / 3600
    assert st.limits[V2G] == 0.0


def test_departure_guard_stops_discharge_for_good_and_charges_first() -> None:
    st, sid, other = discharging_station()
    # 50 kWh still wanted, 1.5 h left: at 50 kW x 0.95 it fits with a 15 min margin.
    st.v2g.set_goal(sid, st.clock.now() + timedelta(hours=1.5), 50.0)
    st.steady(4)
    assert st.limits[V2G] == -15.0
    # 15 minutes on: 1 h 15 min left, less the margin: 1 h x 47.5 kW < 50 kWh.
    d = st.cycle(advance=900.0, follow=True)
    assert d.v2g.held[sid] == "departure guard" and sid in d.v2g.guarded
    st.cycle(follow=True)  # the end, once CP2's decrease shows on the meter
    assert st.limits[V2G] == 0.0
    row = next(r for r in d.inputs.sessions if r.session_id == sid)
    assert row.priority == 1.0 and row.power_cap_kw is None  # the plan's pause is lifted
    st.steady(8)
    assert st.limits[V2G] > 0.0  # charging, out of headroom
    st.v2g.set_goal(sid, st.clock.now() + timedelta(hours=10), 50.0)
    assert st.cycle(follow=True).v2g.held[sid] == "departure guard"  # latched


def test_no_discharge_without_permission_plan_or_bidirectional_charger() -> None:
    st = V2gStation(cfg=v2g_settings(), base_kw=40.0)
    st.plug(V2G)
    st.plug(OTHER)
    st.cycle()
    sid, other = st.session_id(V2G), st.session_id(OTHER)
    st.planned = {sid: -20.0, other: -20.0}
    st.permit(other, power_kw=15.0)  # permitted, but CP2 is not bidirectional
    for d in st.steady(6):
        assert d.v2g.discharge_kw == {}
        assert d.v2g.held.get(sid) == "no V2G permission"
        assert min(d.targets.values()) >= 0.0
    st.permit(sid, power_kw=15.0)
    st.planned = {sid: 5.0}  # the plan charges it: no discharge either
    assert st.cycle(follow=True).v2g.discharge_kw == {}


def test_discharged_energy_and_kind_are_recorded_on_the_session_row() -> None:
    st, sid, _ = discharging_station()
    st.steady(41)  # 10 s at 15 kW (the first cycle commands it)
    st.unplug(V2G)
    st.cycle()
    row = st.db.execute("SELECT kind, discharged_kwh, status FROM sessions WHERE id = ?",
                        [sid]).fetchone()
    assert row[0] == "v2g" and row[2] == "stopped"
    assert row[1] == pytest.approx(15.0 * 10.0 / 3600.0, rel=0.05)
    # A restart resumes the tally from the row (sessions are reloaded from it too).
    st.db.execute("UPDATE sessions SET status = 'active' WHERE id = ?", [sid])
    tracker = SessionTracker(st.db, st.clock)
    again = V2gDispatch(st.cfg.v2g, st.db)
    again.account(st.snapshot(), tracker.active)
    assert again.discharged_kwh(sid) == pytest.approx(row[1])
