"""A limit above the agent's (an operator CSMS's in OCPP local controller mode: the charger
applies min(agent, CSMS)), cycle by cycle: the reading's `cap_kw` caps the session in the
allocation (controller.py `_above`), so the others get the rest, and its lifting is an
ordinary increase. Over real sockets: tests/ocpp/test_ocpp_csms_cap.py."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from agent.control.decision import Decision
from agent.model.snapshot import Snapshot
from tests.agent.cycle_helpers import Station, settings

A, B = ("CP1", 1), ("CP2", 1)
CAPACITY, MARGIN = 60.0, 1.0
BUDGET = CAPACITY - MARGIN


@dataclass
class CsmsStation(Station):
    """Each charger holds min(the agent's limit, the CSMS's) and reports that as its limit
    (as agent/ocpp/charger.py does); its EV draws it."""

    csms: dict[tuple[str, int], float] = field(default_factory=dict)
    csms_max: dict[str, float] = field(default_factory=dict)
    written: dict[tuple[str, int], float] = field(default_factory=dict)

    def snapshot(self) -> Snapshot:
        snap = super().snapshot()
        return replace(snap, chargers=tuple(replace(
            ch, cap_kw=self.csms_max.get(ch.id),
            connectors=tuple(replace(c, cap_kw=self.csms.get((ch.id, c.idx)))
                             for c in ch.connectors)) for ch in snap.chargers))

    def step(self) -> Decision:
        d = self.cycle()
        for w in d.plan.writes:
            self.written[(w.charger_id, w.idx)] = w.kw
        for key, kw in self.written.items():
            self.limits[key] = min(kw, self.csms.get(key, kw))
            self.draw[key] = self.limits[key]
        return d


def station() -> CsmsStation:
    cfg = settings(
        station={"grid_capacity_kw": CAPACITY, "pessimistic_base_load_kw": 15.0,
                 "chargers": [{"id": "CP1", "device": "cp1", "max_power_kw": 100.0,
                               "connectors": 1},
                              {"id": "CP2", "device": "cp2", "max_power_kw": 100.0,
                               "connectors": 1}]},
        control={"headroom_margin_kw": MARGIN, "deadband_kw": 0.2, "cap_after_s": 3600.0,
                 "probe_margin_kw": 0.3, "probe_margin_fraction": 0.0})
    st = CsmsStation(cfg=cfg, base_kw=0.0)
    st.plug(A)
    st.plug(B)
    for _ in range(40):
        st.step()
    assert st.limits == {A: BUDGET / 2, B: BUDGET / 2}
    return st


def test_the_csms_limit_leaves_the_rest_to_the_other_session():
    st = station()
    st.csms[A] = 25.0
    for _ in range(40):
        d = st.step()
    assert st.limits == {A: 25.0, B: BUDGET - 25.0}  # 30 / 29.5 without the cap
    assert d.binding[st.session_id(A)] == "cap"
    # The agent's own limit is the CSMS's: nothing above it waits to jump when it lifts.
    assert st.written[A] == 25.0


def test_a_lifted_csms_limit_is_an_increase_after_the_others_decrease():
    st = station()
    st.csms[A] = 25.0
    for _ in range(40):
        st.step()
    del st.csms[A]
    held = []
    for _ in range(40):
        st.step()
        held.append(dict(st.limits))
        # The limits in force (the EVs draw them at once here) never exceed the budget.
        assert sum(st.limits.values()) <= BUDGET + 1e-6, held
    assert st.limits == {A: BUDGET / 2, B: BUDGET / 2}
    # CP1 rose no earlier than CP2 came down (an increase waits for the headroom).
    first_up = next(i for i, x in enumerate(held) if x[A] > 25.0)
    first_down = next(i for i, x in enumerate(held) if x[B] < BUDGET - 25.0)
    assert first_down <= first_up


def test_the_csms_max_profile_is_the_chargers_max_power():
    st = station()
    st.csms_max["CP1"] = 20.0
    for _ in range(40):
        d = st.step()
    assert st.limits == {A: 20.0, B: BUDGET - 20.0}
    assert d.binding[st.session_id(A)] == "charger"
    assert d.inputs.chargers[0] == ("CP1", 20.0, 1)
    del st.csms_max["CP1"]  # lifted: the rating again
    for _ in range(40):
        st.step()
    assert st.limits == {A: BUDGET / 2, B: BUDGET / 2}


def test_a_csms_limit_below_the_minimum_counts_at_it_and_zero_pauses():
    st = station()
    minimum = st.controller.min_kw[A]
    st.csms[A] = minimum / 2  # the charger holds the EV there; the allocator keeps it going
    d = st.step()
    assert d.allocations[st.session_id(A)] == minimum
    st.csms[A] = 0.0
    d = st.step()
    assert d.allocations[st.session_id(A)] == 0.0
    assert d.allocations[st.session_id(B)] == BUDGET
