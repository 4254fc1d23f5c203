"""Each session's phase count and its 1 <-> 3 phase switch, decided once per cycle.

The controller (agent/control/controller.py) asks three things of it, in this order:
1. `count(snap, active)`, before the allocation: the count each session is booked on, learned
   from its charger's conductors (phase_learning.py) or from a circuit meter's step
   (phase_steps.py), else its charger's; on a charger that can switch, as the switcher books
   it (phase_switch.py);
2. `what_ifs(...)`, after the allocation: would one phase (or three again) fit, asked of the
   allocator (switch_fit.py) for the sessions a switch could help;
3. `steps(...)`, after the write plan: advance each switch, the phase registers to write;
   `acknowledged(...)` once they are written.
It owns everything about phases that lives from cycle to cycle (the learner, the step watch,
the switcher, this cycle's bookings), so the controller reads as allocation and apply only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.config.settings import AgentSettings
from agent.control.apply import Key
from agent.control.decision import AllocationInputs, SessionRow
from agent.control.phase_learning import ASSUMED_PHASES, PhaseCount, PhaseLearner
from agent.control.phase_step_inputs import known_phases, metered_keys, step_samples, step_taught
from agent.control.phase_steps import StepWatch
from agent.control.phase_switch import NATIVE, Booking, Observation, PhaseSwitcher, SwitchRules
from agent.control.sessions import Session
from agent.control.switch_fit import Bases, FitQuestions, back_on_three, settled
from agent.model.snapshot import ChargerState, ConnectorState, Snapshot

# Relief questions (would switching this charging session free a paused one?): at most this
# many per round, a round at most every RELIEF_EVERY_S: each is one more solve, and a depot
# may keep sessions paused for hours with no switch that helps.
RELIEF_QUESTIONS = 3
RELIEF_EVERY_S = 1.0


@dataclass(frozen=True, slots=True)
class Fits:
    """The allocator's answers for one session a switch could help (switch_fit.py)."""

    one: bool = False  # paused on three; on one phase at its minimum it would charge
    three: bool = False  # on one phase; back on three, with the margin, it would charge
    relieves: bool = False  # charging on three; on one, a session paused now would charge too


NO_FIT = Fits()


@dataclass(frozen=True, slots=True)
class PhaseView:
    """This cycle's counts: `counts` per session's connector, `booked` where the allocator
    books a count other than its charger's, `learned` those booked on a measured count,
    `in_amps` those whose limit goes out as A per phase of that many conductors (a charger
    limited in amps, no switch under way): the apply rule's weights (circuit_meters.py)."""

    counts: dict[Key, PhaseCount]
    booked: dict[Key, int]
    learned: frozenset[Key]
    in_amps: dict[Key, int] = field(default_factory=dict)

    def narrowing(self) -> dict[Key, int]:
        """The counts the apply rule may weigh on the booked conductors only: one from a
        circuit meter's step may be wrong (PhaseCount.narrows). One measured on the charger's
        own conductors at the count the allocator books counts too (an increase spreads
        over them evenly: circuit_meters.py `conductor_weights`)."""
        out = {k: n.phases for k, n in self.counts.items()
               if n.measured and k not in self.booked and n.booked in (None, n.phases)}
        out.update({k: self.booked[k] for k in self.learned if self.counts[k].narrows})
        return out

    def waiting(self) -> frozenset[Key]:
        """Sessions booked as of unknown phases: their circuits keep a start reserve."""
        return frozenset(k for k, n in self.counts.items()
                         if n.source == "assumed" and k in self.booked)  # fmt: skip


class SessionPhases:
    def __init__(self, settings: AgentSettings, fit: FitQuestions,
                 min_kw: Mapping[Key, float]) -> None:  # fmt: skip
        """`min_kw`: each connector's configured minimum (the charger's phases)."""
        st = settings.station
        self.learner = PhaseLearner()
        self.step_watch = StepWatch(st.voltage_v)
        self.fit = fit
        self._min_kw = min_kw
        ps = settings.phase_switch
        self._t = 0.0  # the cycle's time, the switcher's clock
        self.switcher = PhaseSwitcher(
            SwitchRules(ps.hold_s, ps.min_interval_s, ps.confirm_timeout_s), lambda: self._t
        ) if ps.enabled else None  # fmt: skip
        self._bookings: dict[Key, Booking] = {}  # this cycle's, on chargers that can switch
        self._in_amps: dict[str, bool] = {}
        self._reports: set[Key] = set()  # connectors whose charger reports its conductors
        self._commanded: tuple[tuple[Key, int], ...] = ()
        self._relief_asked = float("-inf")  # when the last round of relief questions was
        # last cycle's counts with their sessions: the steps' movers of known phases
        self._last_counts: dict[Key, tuple[str, PhaseCount]] = {}
        self.configure(settings)

    def configure(self, settings: AgentSettings) -> None:
        """What depends on the station's configuration (at start and on a swap)."""
        self.s = settings
        st = settings.station
        self.step_watch.volts = st.voltage_v
        self.chargers = {ch.id: ch for ch in st.chargers}
        self.step_taught = step_taught(st)
        self.step_taught_keys = frozenset().union(*self.step_taught.values())
        self.metered_keys = metered_keys(st)

    def count(self, snap: Snapshot, active: Mapping[Key, Session]) -> PhaseView:
        """Each session's phase count, and the count the allocator books it on where that
        differs from its charger's phases. A charger limited in amps per phase keeps its
        own count: its limit converts to amps at its phases, so each conductor carries at
        most the current booked on it whatever the EV does (learning there would need the
        conversion at the learned count too)."""
        self._t = snap.t
        steps: dict[Key, int] = {}
        # Known as of last cycle, for the session still there (a new one is not known yet).
        known = known_phases(self.s.station, {
            key: count for key, (sid, count) in self._last_counts.items()
            if key in active and active[key].id == sid})  # fmt: skip
        for cid, sample in step_samples(self.metered_keys, snap, self.s.control.period_s).items():
            taught = self.step_taught.get(cid, {})
            for key, k in self.step_watch.observe(cid, sample, taught, known).items():
                steps[key] = max(k, steps.get(key, 0))  # two meters: more is adopted at once
        counts: dict[Key, PhaseCount] = {}
        booked: dict[Key, int] = {}
        learned: set[Key] = set()
        in_amps: dict[Key, int] = {}
        self._bookings = {}
        self._reports = set()
        for ch in snap.chargers:
            cfg = self.chargers.get(ch.id)
            if cfg is None:
                continue
            self._in_amps[ch.id] = ch.limit_in_amps
            for conn in ch.connectors:
                key = (ch.id, conn.idx)
                x = active.get(key)
                if x is None:
                    continue
                if conn.currents_a is not None:
                    self._reports.add(key)
                stepped = conn.currents_a is None and key in self.step_taught_keys
                booking = self._booking(ch, conn, x.id)
                if booking.mode == "one":  # switched to (or going to) its first conductor
                    counts[key] = PhaseCount(1, "switching" if booking.hold else "switched")
                    booked[key] = 1
                    learned.add(key)
                    continue
                if booking.mode == "back" and self.learner.measured(key, x.id) == cfg.phases:
                    # Measured on all three before it was switched to one (the learner is
                    # not asked while on one phase): a 3-phase EV, back on three as it was.
                    # As one of unknown phases its own start on L2 and L3 was read as base
                    # load (a charger taking W: the sub-board's L2 at 37 A of base, the
                    # others paused, then itself; tests/ocpp/test_ocpp_phase_switch.py).
                    count = PhaseCount(cfg.phases, "measured")
                elif booking.mode == "back":
                    # Back on three, never seen drawing on three, it starts as an EV of
                    # unknown phases (its readings on one phase say nothing): booked as such
                    # from before the switch on, so the start reserve is kept for it
                    # (tree.start_reserves), and learnt anew.
                    self.learner.restart(key)
                    count = (PhaseCount(min(ASSUMED_PHASES, cfg.phases), "assumed")
                             if conn.currents_a is not None or stepped
                             else PhaseCount(cfg.phases, "configured"))  # fmt: skip
                elif stepped:
                    count = self.learner.observe_steps(key, x.id, steps.get(key), cfg.phases)
                else:
                    count = self.learner.observe(key, x.id, conn.currents_a, cfg.phases)
                if ch.limit_in_amps:
                    # Back on three too: booked on three from the acknowledged switch on (A
                    # per phase of three, each conductor carries at most a third of it). As
                    # an EV of unknown phases (its L1 plus the start reserve) its own start
                    # on L2 and L3 was read as base load on top of the reserve before a
                    # sample taught its count, and it paused the others, then itself.
                    count = (PhaseCount(count.phases, count.source, cfg.phases) if count.learned
                             else PhaseCount(cfg.phases, "configured"))  # fmt: skip
                    if not booking.hold:
                        in_amps[key] = cfg.phases
                counts[key] = count
                if not ch.limit_in_amps and count.phases != cfg.phases:
                    booked[key] = count.phases
                    if count.learned:
                        learned.add(key)
        self.learner.forget(active.keys())
        self._last_counts = {key: (active[key].id, n) for key, n in counts.items()}
        return PhaseView(counts, booked, frozenset(learned), in_amps)

    def min_kw(self, key: Key, view: PhaseView) -> float:
        """The connector's smallest non-zero limit: IEC 61851's minimum is per phase, so
        an EV measured on fewer phases than its charger's starts at that share of it (one
        merely assumed on fewer keeps the charger's: a 3-phase EV would not start below)."""
        base = self._min_kw[key]
        if key not in view.learned:
            return base
        return base * view.booked[key] / self.chargers[key[0]].phases

    def held(self, key: Key) -> bool:
        """A phase switch under way on this connector: its target is 0 until it ends."""
        return self._bookings.get(key, NATIVE).hold

    def _booking(self, ch: ChargerState, conn: ConnectorState, session_id: str) -> Booking:
        """The switcher's booking for a session on a charger that can switch phases."""
        cfg = self.chargers[ch.id]
        if self.switcher is None or ch.phase_switch_pause_s is None or cfg.phases != 3:
            return NATIVE
        key = (ch.id, conn.idx)
        booking = self._bookings[key] = self.switcher.booking(key, session_id,
                                                              conn.charge_phases)
        return booking

    def what_ifs(self, inputs: AllocationInputs, allocations: Mapping[str, float],
                 binding: Mapping[str, str], view: PhaseView, bases: Bases
                 ) -> dict[Key, Fits]:  # fmt: skip
        """The answers for each session a phase switch could help, asked of the allocator
        (agent/control/switch_fit.py), then the real inputs solved again. On one phase: at
        the one-phase minimum. Back on three: as it will start there, with `margin_a` to
        spare. Only sessions the allocator pauses on three phases, that charge on one, or
        (while another session is paused for its minimum) the richest few charging on
        three, cost a solve."""
        if self.switcher is None or not self._bookings:
            return {}
        st = self.s.station
        rows = {r.key: (i, r) for i, r in enumerate(inputs.sessions)}
        charging = [i for i, r in enumerate(inputs.sessions)
                    if allocations.get(r.session_id, 0.0) > 0.0]  # fmt: skip
        out: dict[Key, Fits] = {}
        relief: list[Key] = []
        for key, booking in self._bookings.items():
            if booking.hold or key not in rows:
                continue
            i, r = rows[key]
            cfg = self.chargers[key[0]]
            if booking.mode == "native":
                count = view.counts[key]
                if count.measured and count.phases == 1:  # a 1-phase EV: switching is moot
                    continue
                if allocations.get(r.session_id, 0.0) > 0.0:
                    relief.append(key)
                elif binding.get(r.session_id) == "minimum":
                    out[key] = Fits(one=self.fit.fits(st, bases, i, r, charging, 1,
                                                      self._min_kw[key] / cfg.phases))
            else:
                reports = key in self._reports and not self._in_amps.get(key[0], False)
                phases, min_kw, extra = back_on_three(st, cfg, key, self._min_kw[key], reports,
                                                      self.s.phase_switch.margin_a)
                out[key] = Fits(three=self.fit.fits(st, bases, i, r, charging, phases,
                                                    min_kw, extra))  # fmt: skip
        relieving, asked = self._relief(inputs, allocations, binding, rows, charging, relief,
                                        bases)  # fmt: skip
        if relieving is not None:
            out[relieving] = Fits(relieves=True)
        if out or asked:
            self.fit.arrays.solve()  # the real answer again: battery and grid power come from it
        return out

    def _relief(self, inputs: AllocationInputs, allocations: Mapping[str, float],
                binding: Mapping[str, str], rows: Mapping[Key, tuple[int, SessionRow]],
                charging: list[int], candidates: list[Key], bases: Bases
                ) -> tuple[Key | None, bool]:  # fmt: skip
        """The one session (richest first) whose switch to one phase would let a session
        paused for its minimum charge, everyone charging now still charging; none while a
        switch is under way anywhere (its effect is not in the readings yet). Also whether
        the allocator was asked at all (its arrays then hold a question, not the answer)."""
        assert self.switcher is not None
        paused = [i for i, r in enumerate(inputs.sessions)
                  if allocations.get(r.session_id, 0.0) <= 0.0
                  and binding.get(r.session_id) == "minimum"]  # fmt: skip
        if not paused or not candidates or self.switcher.busy() \
                or self._t - self._relief_asked < RELIEF_EVERY_S:
            return None, False
        ready = [k for k in candidates if self.switcher.may_start(k)]
        if ready:
            self._relief_asked = self._t
        ready.sort(key=lambda k: -allocations.get(rows[k][1].session_id, 0.0))
        for key in ready[:RELIEF_QUESTIONS]:
            i, r = rows[key]
            one_kw = self._min_kw[key] / self.chargers[key[0]].phases
            if self.fit.fits(self.s.station, bases, i, r, charging, 1, one_kw, paused=paused):
                return key, True
        return None, bool(ready)

    def steps(self, snap: Snapshot, active: Mapping[Key, Session],
              targets: Mapping[Key, float], current: Mapping[Key, float | None],
              drawing: Mapping[Key, float], lagging: Mapping[Key, float],
              allocations: Mapping[str, float], binding: Mapping[str, str],
              fits: Mapping[Key, Fits], settle_eps_kw: float
              ) -> tuple[tuple[Key, int], ...]:  # fmt: skip
        """Advance each switch (agent/control/phase_switch.py); the registers to write. The
        room a switch up was booked for is free once no decrease is outstanding (within
        `settle_eps_kw`)."""
        if self.switcher is None:
            return ()
        room_free = settled(current, lagging, targets, settle_eps_kw)
        orders: list[tuple[Key, int]] = []
        for ch in snap.chargers:
            if ch.phase_switch_pause_s is None or not ch.reachable:
                continue
            for conn in ch.connectors:
                key = (ch.id, conn.idx)
                x = active.get(key)
                if key not in self._bookings or x is None:
                    continue
                fit = fits.get(key, NO_FIT)
                paused = allocations.get(x.id, 0.0) <= 0.0 and binding.get(x.id) == "minimum"
                phases = self.switcher.step(key, Observation(
                    conn.charge_phases, ch.phase_switch_pause_s, current.get(key),
                    drawing.get(key, 0.0), paused, fit.one, fit.three, room_free,
                    fit.relieves))  # fmt: skip
                if phases is not None:
                    orders.append((key, phases))
        self.switcher.forget(active.keys())
        self._commanded = tuple(orders)
        return self._commanded

    def acknowledged(self, acks: Mapping[Key, bool] | None) -> None:
        """What became of this cycle's register writes (None: every one was written)."""
        if self.switcher is None:
            return
        for key, _phases in self._commanded:
            self.switcher.acknowledged(key, True if acks is None else acks.get(key, False))
        self._commanded = ()
