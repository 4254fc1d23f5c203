"""Phase switching through the controller, cycle by cycle (agent/control/controller.py with
agent/control/phase_switch.py): hand-made snapshots in, decisions out, the test playing the
chargers, their switch register and the EVs. No sleeping: the clock is the test's.

A metered 32 A sub-board with fixed other load; CP1 (3-phase, switch-capable, 1 s pause) with
a 3-phase 11 kW EV; four 1-phase chargers on grid L2 with EVs plugged after it. Checked every
cycle: no grid phase of the sub-board above its rating with every EV drawing its limit on the
conductors it really uses; the order of a switch (booking first, register written only with
the session's limit at 0, and going up only once no decrease is outstanding); no flapping.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from agent.config.settings import AgentSettings
from agent.control.decision import Decision
from agent.model.snapshot import CircuitMeterState, Snapshot
from tests.agent.cycle_helpers import Station, settings

VOLTS = 230.0
RATING_A = 32.0
BASE_A = (8.7, 6.5, 6.5)  # the sub-board's other load per grid phase
PAUSE_S = 1.0
CP1 = ("CP1", 1)
SINGLES = ("CP2", "CP3", "CP4", "CP5")  # 1-phase chargers, their L1 on grid L2


def station_settings(max_pause_s: float = 2.0) -> AgentSettings:
    chargers = [{"id": "CP1", "device": "cp1", "max_power_kw": 11.0, "circuit": "sub"}] + [
        {"id": cid, "device": f"cp{cid[-1]}", "max_power_kw": 7.4, "min_power_kw": 1.38,
         "phases": 1, "phase_rotation": "L2L3L1", "circuit": "sub"} for cid in SINGLES]
    s = settings(
        station={"grid_capacity_kw": 200.0, "chargers": chargers,
                 "circuits": [{"id": "sub", "max_current_a": RATING_A, "meter": "sub-meter"}]},
        control={"max_pause_s": max_pause_s},
        phase_switch={"enabled": True, "hold_s": 2.0, "min_interval_s": 4.0, "margin_a": 2.0},
    )  # fmt: skip
    devices = [d.model_dump() for d in s.devices] + [
        {"name": "sub-meter", "kind": "meter", "profile": "sim-meter",
         "endpoint": "tcp://127.0.0.1:7"}] + [
        {"name": f"cp{cid[-1]}", "kind": "charger", "profile": "sim-charger",
         "endpoint": f"tcp://127.0.0.1:{10 + n}"} for n, cid in enumerate(SINGLES[1:])]
    return AgentSettings(**{**s.model_dump(exclude={"devices"}), "devices": devices})


@dataclass
class SwitchedSubBoard(Station):
    """CP1's charger: its phases in effect, a switch under way (effective at, phases)."""

    cfg: AgentSettings = field(default_factory=station_settings)
    phases: int = 3
    in_amps: bool = False  # CP1's limit is A per phase of its count (OCPP in A, Alfen)
    switching: tuple[float, int] | None = None
    log: list[dict] = field(default_factory=list)

    def conductors(self, key) -> tuple[float, ...]:
        """A per conductor of the charger (its own L1, L2, L3) at what the EV draws now."""
        kw = self.draw.get(key, 0.0)
        if key == CP1:
            return tuple(kw * 1000 / (self.phases * VOLTS) if q < self.phases else 0.0
                         for q in range(3))  # fmt: skip
        return (kw * 1000 / VOLTS, 0.0, 0.0)

    def grid_phases(self) -> tuple[float, float, float]:
        amps = list(BASE_A)
        for key, state in self.states.items():
            if state != "C":
                continue
            rotation = (0, 1, 2) if key == CP1 else (1, 2, 0)
            for q, a in enumerate(self.conductors(key)):
                amps[rotation[q]] += a
        return (amps[0], amps[1], amps[2])

    def snapshot(self) -> Snapshot:
        snap = super().snapshot()
        chargers = tuple(
            replace(ch, phase_switch_pause_s=PAUSE_S if ch.id == "CP1" else None,
                    limit_in_amps=self.in_amps and ch.id == "CP1",
                    connectors=tuple(replace(
                        c, currents_a=self.conductors((c.charger_id, c.idx)),
                        charge_phases=self.phases if ch.id == "CP1" else None)
                        for c in ch.connectors))
            for ch in snap.chargers)  # fmt: skip
        amps = self.grid_phases()
        meter = CircuitMeterState("sub", amps, sum(amps) * VOLTS / 1000)
        return replace(snap, chargers=chargers, circuit_meters=(meter,))

    def step(self) -> Decision:
        """One cycle: the controller decides, the chargers take the limits and the switch
        register, the EVs draw what they may on the conductors they use."""
        self.clock.advance(0.25)
        t = self.clock.monotonic()
        if self.switching is not None and self.switching[0] <= t:
            self.phases, self.switching = self.switching[1], None
        d = self.controller.decide(self.snapshot())
        for w in d.plan.writes:
            self.limits[(w.charger_id, w.idx)] = w.kw
        acks = {}
        for key, phases in d.phase_switches:
            assert key == CP1
            if phases != self.phases:
                self.switching = (t + PAUSE_S, phases)
            acks[key] = True
        self.controller.commit(d, {(w.charger_id, w.idx): True for w in d.plan.writes},
                               dict.fromkeys(d.heartbeats, True), True, acks)  # fmt: skip
        for key, state in self.states.items():
            if state != "C":
                continue
            if key == CP1:  # 16 A per phase on its conductors; nothing while switching
                ev_max = 0.0 if self.switching else 11.0 * self.phases / 3
            else:
                ev_max = 7.4
            self.draw[key] = min(self.limits[key], ev_max)
        self.log.append({"t": t, "d": d, "amps": self.grid_phases(), "limit": d.targets,
                         "in_force": d.snapshot.chargers[0].connectors[0].limit_kw,
                         "cp1": d.phases.get(CP1), "writes": d.phase_switches})
        return d

    def run(self, seconds: float) -> None:
        for _ in range(int(seconds / 0.25)):
            self.step()


def test_switch_down_when_squeezed_and_back_when_room_returns_never_over_a_phase():
    st = SwitchedSubBoard()
    st.plug(CP1)
    st.run(6.0)
    assert st.draw[CP1] >= 4.14 and st.log[-1]["cp1"].words() == "3-phase (measured)"
    for cid in SINGLES:  # L2 cannot give the five of them 6 A each
        st.plug((cid, 1))
    st.run(20.0)
    assert st.phases == 1, [e["cp1"] for e in st.log[-8:]]
    assert st.log[-1]["cp1"].words() == "1-phase (switched)"
    assert st.draw[CP1] >= 1.38 and st.conductors(CP1)[1:] == (0.0, 0.0)
    assert all(st.draw[(cid, 1)] >= 1.38 for cid in SINGLES)  # nobody paused any more
    for cid in SINGLES[1:]:  # three leave: three phases fit again
        st.unplug((cid, 1))
    st.run(15.0)
    assert st.phases == 3 and st.draw[CP1] >= 4.14
    assert st.log[-1]["cp1"].words() == "3-phase (measured)"

    writes = [(i, w) for i, e in enumerate(st.log) for _, w in e["writes"]]
    assert [w for _, w in writes] == [1, 3]  # one switch each way: no flapping
    for i, phases in writes:
        e = st.log[i]
        # written only with the session's limit at 0 in force and its target held at 0
        assert e["in_force"] == 0.0 and e["d"].targets[CP1] == 0.0, (i, e)
        before = st.log[i - 1]["cp1"]
        if phases == 1:  # already paused at 0: written in the first cycle booked on one
            assert e["cp1"].source == "switching", e["cp1"]
        else:
            # booked on three as measured before its switch to one (it drew on all three
            # then), before the write: not as an EV of unknown phases, whose start on its
            # other conductors reads as base load (session_phases.py)
            assert before.words() == e["cp1"].words() == "3-phase (measured)", before
            d = e["d"]
            slack = st.cfg.control.deadband_kw + 1e-3
            assert all(cur is None or cur <= d.targets.get(k, 0.0) + slack
                       for k, cur in ((c.key, c.limit_kw) for c in d.connectors))
    worst = [max(e["amps"]) for e in st.log]
    assert max(worst) <= RATING_A + 1e-6, max(worst)


def test_a_charging_3_phase_ev_switches_to_free_a_paused_one_without_waiting_its_turn():
    """The pause rotation here would take 10 minutes to reach CP1; a 1-phase EV paused for its
    minimum is a worse share than CP1 on one phase, so CP1 is switched as soon as the
    allocator says one phase would let the paused EV charge with everyone else charging."""
    st = SwitchedSubBoard(cfg=station_settings(max_pause_s=600.0))
    st.plug(CP1)
    st.run(6.0)
    squeezed = len(st.log)
    for cid in SINGLES:
        st.plug((cid, 1))
    st.run(8.0)
    writes = [(i, w) for i, e in enumerate(st.log) for _, w in e["writes"]]
    assert [w for _, w in writes] == [1], [e["cp1"] for e in st.log[squeezed:]]
    i, _ = writes[0]
    # the session was charging when the switch started: its limit fell to 0 first
    assert st.log[i]["in_force"] == 0.0 and st.log[i]["d"].targets[CP1] == 0.0
    assert (i - squeezed) * 0.25 <= 3.0  # seconds of the test's clock after the squeeze
    assert st.phases == 1 and st.log[-1]["cp1"].words() == "1-phase (switched)"
    assert st.draw[CP1] >= 1.38 and all(st.draw[(cid, 1)] >= 1.38 for cid in SINGLES)
    st.run(10.0)  # stays on one while the four are there: no flapping
    assert [w for e in st.log for _, w in e["writes"]] == [1]
    assert max(max(e["amps"]) for e in st.log) <= RATING_A + 1e-6


def test_a_charger_limited_in_amps_goes_back_on_three_and_keeps_charging_there():
    """A charger whose limit is A per phase of its count (an OCPP profile in A carries its
    numberPhases): back on three it is booked on three from the acknowledged switch on, with
    no start reserve (each conductor carries at most a third of its limit, whatever the EV),
    and an increase weighs a third on each of its conductors. As an EV of unknown phases
    its start on L2 was read as base load on top of the reserve and over OCPP it was paused
    and stayed paused (docs/ocpp.md, "Phase switching")."""
    st = SwitchedSubBoard(in_amps=True)
    st.plug(CP1)
    st.run(6.0)
    assert st.draw[CP1] >= 4.14
    for cid in SINGLES:
        st.plug((cid, 1))
    st.run(20.0)
    assert st.phases == 1 and st.draw[CP1] >= 1.38
    assert all(st.draw[(cid, 1)] >= 1.38 for cid in SINGLES)
    for cid in SINGLES[1:]:
        st.unplug((cid, 1))
    up = len(st.log)
    st.run(15.0)
    writes = [(i, w) for i, e in enumerate(st.log) for _, w in e["writes"]]
    assert [w for _, w in writes] == [1, 3], [e["cp1"] for e in st.log[up:]]
    i, _ = writes[1]
    # booked on three (configured: no start reserve) from before the write on
    assert all(e["cp1"].phases == 3 and e["cp1"].source != "assumed" for e in st.log[i:])
    assert st.phases == 3
    # once it started on three, never paused again, and the 1-phase EV left charges too
    started = next(j for j in range(i, len(st.log)) if st.log[j]["limit"].get(CP1, 0.0) > 0.0)
    assert all(e["limit"].get(CP1, 0.0) >= 4.14 for e in st.log[started + 4:])
    assert st.draw[CP1] >= 4.14 and st.draw[(SINGLES[0], 1)] >= 1.38
    assert max(max(e["amps"]) for e in st.log) <= RATING_A + 1e-6
