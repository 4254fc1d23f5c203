"""Circuit meters, cycle by cycle: a metered 32 A sub-board with 1-phase EVs all on L1 (the
agent takes them for 3-phase EVs) is held by its measured currents, never over its fuse; a
stale sub-board meter degrades that circuit only."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from agent.config.settings import AgentSettings
from agent.model.snapshot import CircuitMeterState, Snapshot
from tests.agent.cycle_helpers import Station, settings

VOLTS = 230.0
KEYS = (("CP1", 1), ("CP2", 1), ("CP3", 1))


def sub_board_settings(**circuit) -> AgentSettings:
    s = settings(station={
        "grid_capacity_kw": 200.0,
        "circuits": [{"id": "sub", "max_current_a": 32.0, "meter": "sub-meter", **circuit}],
        "chargers": [{"id": cid, "device": f"cp{n}", "max_power_kw": 11.0, "connectors": 1,
                      "circuit": "sub"} for n, cid in enumerate(("CP1", "CP2", "CP3"), 1)],
    })  # fmt: skip
    devices = [d.model_dump() for d in s.devices] + [
        {"name": "sub-meter", "kind": "meter", "profile": "sim-meter",
         "endpoint": "tcp://127.0.0.1:7"},
        {"name": "cp3", "kind": "charger", "profile": "sim-charger",
         "endpoint": "tcp://127.0.0.1:8"},
    ]  # fmt: skip
    return AgentSettings(**{**s.model_dump(exclude={"devices"}), "devices": devices})


@dataclass
class SubBoard(Station):
    """The sub-board's meter as the physics would read it: every EV on L1 (1-phase EVs on
    3-phase chargers wired alike), plus a base load per phase."""

    sub_base_a: tuple[float, float, float] = (4.0, 2.0, 2.0)
    sub_meter_stale: bool = False
    peaks: list[float] = field(default_factory=list)

    def sub_currents(self) -> tuple[float, float, float]:
        l1 = sum(self.draw.get(k, 0.0) for k in KEYS) * 1000 / VOLTS
        b = self.sub_base_a
        return (b[0] + l1, b[1], b[2])

    def snapshot(self) -> Snapshot:
        snap = super().snapshot()
        amps = self.sub_currents()
        self.peaks.append(max(amps))
        kw = sum(amps) * VOLTS / 1000
        reading = CircuitMeterState("sub", None if self.sub_meter_stale else amps,
                                    None if self.sub_meter_stale else kw)
        return replace(snap, circuit_meters=(reading,))


def test_one_phase_evs_under_a_metered_sub_board_stay_within_its_fuse():
    st = SubBoard(cfg=sub_board_settings(), base_kw=10.0)
    for key in KEYS:
        st.plug(key)
    for _ in range(40):
        d = st.cycle(follow=True)
        # what the EVs draw now (they follow at once) on the fuse's worst phase
        assert max(st.sub_currents()) <= 32.0 + 1e-6, (st.sub_currents(), st.limits)
    drawn = sum(st.draw[k] for k in KEYS)
    # All of it on L1: 32 A - 1 A margin - 4 A base = 27 A = 6.21 kW at most, and it is used.
    assert drawn <= 27.0 * VOLTS / 1000 + 1e-6
    assert drawn >= 0.9 * 27.0 * VOLTS / 1000, st.limits
    assert "circuit_meter_stale:sub" not in d.budget.modes


def test_without_the_meter_the_same_evs_would_overload_l1():
    """The control: the tree alone (EVs taken as 3-phase) lets them draw 96 A on L1."""
    cfg = sub_board_settings()
    circuits = [c.model_copy(update={"meter": None}) for c in cfg.station.circuits]
    cfg = cfg.model_copy(update={"station": cfg.station.model_copy(update={"circuits": circuits})})
    st = Station(cfg=cfg, base_kw=10.0)
    for key in KEYS:
        st.plug(key)
    for _ in range(40):
        st.cycle(follow=True)
    l1 = sum(st.draw[k] for k in KEYS) * 1000 / VOLTS
    assert l1 > 32.0 * 2.5


def test_a_stale_sub_board_meter_degrades_that_circuit_only():
    st = SubBoard(cfg=sub_board_settings(), base_kw=10.0)
    for key in KEYS:
        st.plug(key)
    for _ in range(30):
        st.cycle(follow=True)
    before = dict(st.limits)
    st.sub_meter_stale = True
    for _ in range(10):
        d = st.cycle(follow=True)
        assert all(st.limits[k] <= before[k] + 1e-9 for k in KEYS)  # no increase granted
    assert "circuit_meter_stale:sub" in d.budget.modes
    assert "grid_meter_stale" not in d.budget.modes
    fallback = {k: st.controller.fallback_per_connector[k] for k in KEYS}
    assert all(st.limits[k] <= fallback[k] + 1e-9 for k in KEYS)  # held at the fallbacks
    # the fallbacks fit the fuse with all current on one phase
    assert sum(fallback.values()) * 1000 / VOLTS <= 32.0 + 1e-9
    st.sub_meter_stale = False
    for _ in range(30):
        d = st.cycle(follow=True)
        assert max(st.sub_currents()) <= 32.0 + 1e-6
    assert "circuit_meter_stale:sub" not in d.budget.modes
    assert sum(st.draw[k] for k in KEYS) >= 0.9 * 27.0 * VOLTS / 1000


def test_stale_base_is_the_configured_pessimistic_one():
    from agent.control.circuit_meters import measure_circuits

    for circuit, want in (({"pessimistic_base_a": 12.0}, 12.0), ({}, None)):
        cfg = sub_board_settings(**circuit)
        st = SubBoard(cfg=cfg, sub_meter_stale=True)
        fallback = st.controller.fallback_per_connector
        [m] = measure_circuits(cfg.station, st.snapshot(), {}, fallback, 0.25)
        expected = want if want is not None else 32.0 - sum(fallback.values()) * 1000 / VOLTS
        assert m.stale and m.headroom_kw == 0.0
        assert m.base_current_a == (expected, expected, expected)


def test_apply_grants_increases_below_a_circuit_only_out_of_its_room():
    from agent.control.apply import plan_writes

    a, b, c = ("A", 1), ("B", 1), ("C", 1)  # a and b below the circuit, c elsewhere
    kw = dict(import_kw=10.0, capacity_kw=100.0, margin_kw=1.0, deadband_kw=0.1)
    common = dict(drawing={a: 2.0, b: 2.0, c: 2.0}, min_kw={a: 1.0, b: 1.0, c: 1.0},
                  initial_kw={})  # fmt: skip
    plan = plan_writes({a: 6.0, b: 6.0, c: 6.0}, {a: 2.0, b: 2.0, c: 2.0}, **common, **kw,
                       circuits=[(frozenset({a, b}), 3.0)])
    new = {(w.charger_id, w.idx): w.kw for w in plan.writes}
    assert new[a] + new[b] - 4.0 == 3.0  # the circuit's room, shared in proportion
    assert new[a] == new[b] == 3.5
    assert new[c] == 6.0  # the grid has room: elsewhere nothing changes
    # Starts the room would leave below their minimum start one by one, in arrival order.
    plan = plan_writes({a: 6.0, b: 6.0}, {a: 0.0, b: 0.0}, {}, {a: 4.0, b: 4.0}, {}, **kw,
                       circuits=[(frozenset({a, b}), 5.0)])
    assert [(w.charger_id, w.kw) for w in plan.writes] == [("A", 5.0)]
    # No room (a stale meter): no increase at all below the circuit.
    plan = plan_writes({a: 6.0}, {a: 2.0}, {a: 2.0}, {a: 1.0}, {}, **kw,
                       circuits=[(frozenset({a, b}), 0.0)])
    assert plan.writes == () and plan.held_back_kw == 4.0


def test_a_sample_taken_before_an_increase_leaves_the_evs_own_draw_out_of_the_base():
    """An OCPP EV raised 0 -> 1.45 kW draws 2.1 A a phase on the sub-board's meter while its
    meter value (taken before the increase) still says 0. Counted at its sample, its own draw
    was the sub-board's base load (the allocator then paused another EV for it); counted at
    the limit in force (`raised`, LimitLag.base_draws) the base is the non-EV load. The room
    for increases still counts its whole limit as undrawn: that stays on the safe side."""
    from agent.control.circuit_meters import measure_circuits
    from agent.control.counted_draws import counted_draws

    cfg = sub_board_settings()
    st = SubBoard(cfg=cfg, base_kw=10.0)
    st.plug(KEYS[0])
    snap = st.snapshot()
    ev_a = 1.45 * 1000 / (3 * VOLTS)
    chargers = tuple(replace(ch, connectors=tuple(
        replace(c, power_kw=0.0, power_ts=100.0, limit_kw=1.45) if (ch.id, c.idx) == KEYS[0]
        else c for c in ch.connectors)) for ch in snap.chargers)  # fmt: skip
    meter = CircuitMeterState("sub", (4.0 + ev_a, 2.0 + ev_a, 2.0 + ev_a),
                              (8.0 + 3 * ev_a) * VOLTS / 1000)
    snap = replace(snap, chargers=chargers, circuit_meters=(meter,))
    limits = {KEYS[0]: 1.45, KEYS[1]: 0.0, KEYS[2]: 0.0}
    fallback = dict.fromkeys(KEYS, 0.0)
    stale, = measure_circuits(cfg.station, snap, limits, fallback, 1.0)
    known, = measure_circuits(cfg.station, snap, limits, fallback, 1.0,
                              draws=counted_draws(snap, limits, raised={KEYS[0]}))
    assert [round(a, 2) for a in stale.base_current_a] == [round(4.0 + ev_a, 2),
                                                          round(2.0 + ev_a, 2),
                                                          round(2.0 + ev_a, 2)]
    assert [round(a, 2) for a in known.base_current_a] == [4.0, 2.0, 2.0]
    assert known.headroom_kw == stale.headroom_kw



def test_a_charger_limited_in_amps_weighs_a_third_of_an_increase_on_each_conductor():
    """Its limit goes out as A per phase of its count: of P kW each of its three conductors
    carries at most P/3V whatever the EV, where a charger limited in kW may put P/V on its
    first (a 1-phase EV) and P/2V on its second. One phase (a switch): all on its first."""
    from agent.control.circuit_meters import conductor_weights

    st = sub_board_settings().station
    keys = frozenset(KEYS)
    weights = conductor_weights(st, keys, in_amps={KEYS[0]: 3})
    assert [w.get(KEYS[0]) for w in weights] == [1 / 3, 1 / 3, 1 / 3]
    assert [w.get(KEYS[1]) for w in weights] == [1.0, 1 / 2, 1 / 3]  # limited in kW
    weights = conductor_weights(st, keys, in_amps={KEYS[0]: 1})
    assert [w.get(KEYS[0]) for w in weights] == [1.0, None, None]


def test_an_ev_measured_on_its_chargers_conductors_weighs_its_increase_evenly_on_them():
    """A power limit spreads evenly over the phases the EV draws on: measured on all three of
    its charger's conductors, P/3V lands on each (not P/V on the first as for an EV of
    unknown phases: its increase back on three after a switch waited for ever for room on its
    second conductor, tests/ocpp/test_ocpp_phase_switch.py in W); measured on two, P/2V on
    each of those and none on the third."""
    from agent.control.circuit_meters import conductor_weights
    from agent.control.phase_learning import PhaseCount
    from agent.control.session_phases import PhaseView

    st = sub_board_settings().station
    keys = frozenset(KEYS)
    view = PhaseView(counts={KEYS[0]: PhaseCount(3, "measured"), KEYS[1]: PhaseCount(3, "stepped")},
                     booked={}, learned=frozenset())
    assert view.narrowing() == {KEYS[0]: 3}  # a circuit meter's step may be wrong: not it
    weights = conductor_weights(st, keys, view.narrowing())
    assert [w.get(KEYS[0]) for w in weights] == [1 / 3, 1 / 3, 1 / 3]
    assert [w.get(KEYS[1]) for w in weights] == [1.0, 1 / 2, 1 / 3]
    weights = conductor_weights(st, keys, {KEYS[0]: 2})
    assert [w.get(KEYS[0]) for w in weights] == [1 / 2, 1 / 2, None]
    # booked on a count of its own (a charger limited in amps keeps its configured count):
    # not spread by the measured one
    view = PhaseView(counts={KEYS[0]: PhaseCount(1, "measured", booked=3)}, booked={},
                     learned=frozenset())
    assert view.narrowing() == {}
