"""The grid meter's base load with a charger whose draw is a sample (OCPP meter values), cycle
by cycle: the draw counts as at a circuit meter (agent/control/counted_draws.py).

Found over OCPP with meter values once a minute (tests/ocpp/test_ocpp_relay.py, CI of
2026-12-07): the agent raised an EV, the grid meter showed its ramp while its sample still
showed the old draw, the ramp read as base load and the limit came down again; the EV's next
sample, taken before it followed that decrease, then read more than the grid meter and the
meter was judged implausible: the safe budget held a 60 kW station's only EV at 24 kW until
the sample after, a minute later, and so on every minute.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from agent.model.snapshot import Snapshot
from tests.agent.cycle_helpers import Station, settings

KEY = ("CP1", 1)
CAPACITY = 60.0


def one_charger_station(max_power_kw: float = 150.0) -> SampledStation:
    cfg = settings(
        station={"grid_capacity_kw": CAPACITY, "pessimistic_base_load_kw": 15.0,
                 "chargers": [{"id": "CP1", "device": "cp1", "max_power_kw": max_power_kw,
                               "connectors": 1}]},
        control={"headroom_margin_kw": 0.0, "deadband_kw": 0.2, "cap_after_s": 3600.0,
                 "probe_margin_kw": 0.3, "probe_margin_fraction": 0.0})
    return SampledStation(cfg=cfg, base_kw=0.0)


@dataclass
class SampledStation(Station):
    """The charger reports `sample` (kW, its time) as the connector's draw, not `draw`: the
    simulator's physics is `draw`, what the grid meter adds up."""

    sample: dict[tuple[str, int], tuple[float, float]] = field(default_factory=dict)

    def snapshot(self) -> Snapshot:
        snap = super().snapshot()
        chargers = tuple(replace(ch, connectors=tuple(
            replace(c, power_kw=self.sample[(ch.id, c.idx)][0],
                    power_ts=self.sample[(ch.id, c.idx)][1])
            if (ch.id, c.idx) in self.sample else c for c in ch.connectors))
            for ch in snap.chargers)  # fmt: skip
        return replace(snap, chargers=chargers)


def settle(st: SampledStation, kw: float, cycles: int = 40) -> None:
    """The EV takes its limit up to `kw` and a fresh sample shows it every cycle."""
    for k in range(cycles):
        st.cycle()
        st.draw[KEY] = min(kw, st.limits[KEY])
        st.sample[KEY] = (st.draw[KEY], 1000.0 + k)


def raise_after_fall() -> tuple[list[float], list[float], list[float]]:
    """The EV held at 25 kW by 35 kW of other load, which then switches off: the agent raises
    the EV. 10 s with no periodic sample (one a minute): only the meter shows the EV's ramp.
    The charger answers the agent's requests for a sample (OCPP TriggerMessage) with one
    taken before the EV follows the cycle's write. Per cycle: the limit, the import, the
    draw the agent knew."""
    st = one_charger_station()
    st.plug(KEY)
    st.base_kw = 35.0
    settle(st, 150.0)
    assert 24.0 <= st.limits[KEY] <= 25.0  # 60 - 35, less the probe's margin
    st.base_kw = 0.0
    limits, imports, seen = [], [], []
    for k in range(40):
        d = st.cycle()
        seen.append(st.sample[KEY][0])
        if KEY in d.samples_wanted:
            st.sample[KEY] = (st.draw[KEY], 2000.0 + k)
        st.draw[KEY] = st.limits[KEY]
        limits.append(st.limits[KEY])
        imports.append(st.grid_kw())
    return limits, imports, seen


def test_an_ev_raised_before_its_sample_shows_it_keeps_its_limit():
    limits, imports, _ = raise_after_fall()
    assert max(imports) <= CAPACITY + 1e-6
    # Raised step by step (an increase waits while the last one's undrawn part, counted
    # from the old sample, fills the headroom), never lowered: with the ramp read as base
    # load it went 35, 50, then down to 45.
    assert all(b >= a for a, b in zip(limits, limits[1:], strict=False)), limits


def test_a_sample_taken_before_a_decrease_was_followed_does_not_make_the_meter_implausible():
    st = one_charger_station()
    st.plug(KEY)
    settle(st, 150.0)
    assert st.limits[KEY] >= CAPACITY - 1.0
    st.base_kw = 30.0  # a base-load step: the EV is lowered
    d = st.cycle()
    assert st.limits[KEY] <= 31.0
    st.base_kw = 0.0  # and gone again
    # The charger's next sample was taken before the EV followed: it reads the old draw.
    st.sample[KEY] = (st.draw[KEY], 2000.0)
    st.draw[KEY] = st.limits[KEY]
    modes, limits, imports = set(), [], []
    for k in range(40):  # 10 s, no periodic sample (one a minute)
        d = st.cycle()
        if KEY in d.samples_wanted:  # as above
            st.sample[KEY] = (st.draw[KEY], 3000.0 + k)
        st.draw[KEY] = st.limits[KEY]
        modes |= d.budget.modes
        limits.append(st.limits[KEY])
        imports.append(st.grid_kw())
    assert "grid_meter_implausible" not in modes
    assert max(imports) <= CAPACITY + 1e-6
    assert limits[-1] >= CAPACITY - 1.0, limits


def test_an_ev_raised_before_its_sample_shows_it_gets_its_share_once_the_agent_asks():
    # As above: an increase held back by a raise's undrawn part (counted from the old
    # sample) asks for that connector's sample (controller.py `_unproven_raises`). Before,
    # nothing asked: 35, 35, 50, 50, ... the limit stayed at 50 of 60 for the whole 10 s,
    # waiting for the periodic sample a minute later.
    limits, imports, seen = raise_after_fall()
    assert max(imports) <= CAPACITY + 1e-6
    # The share (60 kW, no margin here) within 3 s (12 cycles): 35, 35, 50, 50, 50, 60.
    first = next((k for k, v in enumerate(limits) if v >= CAPACITY - 0.5), None)
    assert first is not None and first < 12, limits
    # Not by counting the raise as drawn: the last step came once a sample showed the EV
    # at the limit before it.
    assert seen[first] >= limits[first - 1] - 0.1, (limits, seen)


def test_a_raise_not_shown_follow_s_later_asks_for_a_sample_until_one_shows_it():
    # A raise that holds nothing back (the charger's 30 kW is the EV's whole share): the EV
    # counts at its limit in the base load until a sample shows it, so a base-load rise in
    # those seconds would go unseen; once it had `follow_s` to follow (1.5 s), its sample is
    # asked for (limit_lag.py `overdue`). Before, nothing asked: up to a meter interval.
    st = one_charger_station(max_power_kw=30.0)
    st.base_kw = 40.0
    st.plug(KEY)
    settle(st, 150.0)
    assert st.limits[KEY] <= 20.0
    st.base_kw = 0.0
    asked, raised_at = [], None
    for k in range(24):  # 6 s
        d = st.cycle()
        if raised_at is None and st.limits[KEY] > 20.0:
            raised_at = k
        if KEY in d.samples_wanted:  # answered, taken before the EV follows this write
            asked.append(k)
            st.sample[KEY] = (st.draw[KEY], 3000.0 + k)
        st.draw[KEY] = min(30.0, st.limits[KEY])
    assert raised_at is not None and st.limits[KEY] >= 29.5
    follow_cycles = st.cfg.control.limit_follow_s / 0.25
    late = [k for k in asked if k > raised_at + follow_cycles]
    assert late, (raised_at, asked)
    # Answered once (the EV at its limit): the raise is shown, nothing more is asked.
    assert asked[-1] == late[0], (raised_at, asked)
