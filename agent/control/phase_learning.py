"""An EV's phase count, learned from its charger's per-conductor currents or from a circuit
meter's step (issue 13).

A 1-phase EV on a 3-phase charger puts all of its current on the charger's L1. The allocator
books a session's power on its `phases` (DESIGN.md "Allocation": the charger's first k
conductors, through the charger's phase rotation), so where the charger reports the current
on each conductor (Alfen NG9xx 320/322/324, Vestel, Phoenix, the simulator's `sim-charger-ac`)
the agent counts the conductors that carry current and books that many; without such readings
the session keeps its charger's configured phases, as before, unless a meter above it
teaches its count (see the end).

Why the phase count matters, and which way is safe: the allocator books P kW on k phases as
1000 P / (k V) A on each. On a charger whose limit is a power (the EV draws P whatever its
phases), an EV really on m phases draws 1000 P / (m V) A on each of them. Booked on more
phases than it uses (k > m), its loaded phases carry k/m times what is booked on them: a
1-phase EV booked on 3 puts 3x its booking on L1 (2P/3V too much). Booked on fewer (k < m),
the booked phases carry less than booked and the others P/(mV) each that nothing books (P/3V
at most). The phase with the most current is the one that trips a fuse, so the safe side is
fewer phases, with the most current on the EV's first conductor. (A charger limited in amps
per phase is the other way round; the controller keeps its configured count, see there.)

The rule, per connector and session:
- Until the EV draws meaningfully, a session on a charger that reports per-conductor
  currents is booked on one phase, its charger's L1 (every EV draws on it; "1-phase
  (assumed)"), with its charger's own minimum power (an EV of unknown phases charges at that).
  A 1-phase EV then starts within its fuse, and the allocator keeps the room it needs on its
  phase instead of a third of it.
- An observation counts only while the EV draws meaningfully: its most loaded conductor
  carries at least `DRAWING_MIN_A`. Below that (pausing, waking up, tapering at the end of
  charge) a phase dropping out says nothing about what the EV does when it goes back up.
- A conductor carries current at >= `CARRYING_MIN_A` and >= `CARRYING_FRACTION` of the most
  loaded one (a 1-phase EV's other conductors show a few hundred mA of electronics and
  meter noise at most). The observed count is the highest carrying conductor (L1 and L3
  carrying: 3), so the booking covers every conductor that carries current.
- More phases than booked: adopted at once. A conductor carrying current nothing books is
  the danger this learning exists for; it lasts until the next reading.
- Fewer phases than booked: adopted only after `DROP_CYCLES` consecutive meaningful
  observations below the booked count, and then to the largest count seen among them. So a
  3-phase EV whose phases drop out one at a time as it tapers, or a contactor bouncing, does
  not make the agent book it on one phase and then see it come back on three. The price: an
  EV that really switches from three phases to one (at a meaningful draw) is under-booked on
  its L1 for those cycles; a metered circuit still holds (its meter counts the current as
  base load at once, and increases below it are counted as if on one phase).
- A new session on the connector starts again; a charger without per-conductor readings
  keeps its configured count ("3-phase (configured)"), as before this learning existed,
  unless a circuit meter can teach it (below).

From a circuit meter's step (`observe_steps`, agent/control/phase_steps.py): a charger
without per-conductor readings below circuits that are all metered where they have a
per-phase rating (agent/control/phase_step_inputs.py) is booked as assumed from its
session's start, like one that reports them (one phase, its charger's minimum, the start's
reserve on its other conductors), and a step of its draw that the meter explains on k
phases is an observation of k ("1-phase (circuit meter step)"), under the rules above. Such
a count can be wrong where the reading of one connector is: a non-EV load moving at the
same instant by just the complement of the step (+2/3 of a 3-phase EV's start on L1, -1/3
on L2 and L3) makes it look 1-phase. Why a wrong lower count still leaves every phase
within its rating:
- The allocator books it on fewer phases: on its learned ones it books more than it draws
  (the safe side above); what it draws on the others is measured by every meter above it
  and counted as that circuit's base load at its next reading (agent/control/
  circuit_meters.py), so the allocation fits the fuses again from then on. Hence only below
  metered fuses: an unmetered one would not count it.
- Between two readings only increases could pass a rating, and those are granted out of
  each phase's measured room with the weights of all of its charger's conductors (1, 1/2,
  1/3), never with the learned count's (only a count from its own conductors narrows them):
  whatever its true count, what an increase puts on a phase fits its room. The price: a
  1-phase EV learned from steps takes room on its charger's other phases while it ramps up
  (kept free for an increase held back: the controller's ramp reserves).
  tests/agent/test_phase_steps.py fools the learner so and checks the sub-board; with the
  learned count in the weights L2 went to 33.8 A on a 32 A fuse.
- Its minimum power scales with the learned count (1-phase: 1.38 kW), at which a 3-phase EV
  may stop charging: less energy, not an overload; its stop is a step on three phases, which
  teaches three (adopted at once) unless another EV of unknown phases moves with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

Key = tuple[str, int]
Currents = tuple[float, float, float]

DRAWING_MIN_A = 4.0  # below IEC 61851's 6 A minimum with room for a slow ramp
CARRYING_MIN_A = 1.0
CARRYING_FRACTION = 0.25
DROP_CYCLES = 5


ASSUMED_PHASES = 1  # before the first meaningful reading (see above)


@dataclass(frozen=True, slots=True)
class PhaseCount:
    phases: int  # what the session is booked on
    # "measured" (its charger's conductors), "stepped" (a circuit meter's step, see
    # agent/control/phase_steps.py), "assumed" (none meaningful yet), "configured"
    source: str
    # What the allocator books it on where that is not `phases` (a charger limited in amps
    # keeps its configured count: agent/control/session_phases.py `count`).
    booked: int | None = None

    @property
    def measured(self) -> bool:
        return self.source == "measured"

    @property
    def narrows(self) -> bool:
        """The apply rule may count it on its booked conductors only: measured on its
        charger's conductors, or switched to one phase (the charger's register says so).
        A count from a circuit meter's step may be wrong, and one switching may not be in
        effect yet: those count on all of the charger's conductors (phase_steps.py)."""
        return self.source in ("measured", "switched")

    @property
    def learned(self) -> bool:
        """From a measurement: its charger's conductors or a circuit meter's step."""
        return self.source in ("measured", "stepped")

    def words(self) -> str:
        if self.booked is not None and self.booked != self.phases:
            return f"{self.phases}-phase ({self._source_words}; booked on {self.booked}: limit in A)"
        return f"{self.phases}-phase ({self._source_words})"

    @property
    def _source_words(self) -> str:
        return "circuit meter step" if self.source == "stepped" else self.source


def observed_phases(currents_a: Currents, conductors: int) -> int | None:
    """The phase count one reading shows (the highest carrying conductor, 1-based), or None
    when the EV does not draw meaningfully (or the reading is not a number)."""
    values = [currents_a[q] for q in range(conductors)]
    if not all(a == a and a >= 0.0 for a in values):  # NaN or negative: no information
        return None
    largest = max(values)
    if largest < DRAWING_MIN_A:
        return None
    floor = max(CARRYING_MIN_A, CARRYING_FRACTION * largest)
    return max(q + 1 for q, a in enumerate(values) if a >= floor)


@dataclass(slots=True)
class _Track:
    session_id: str
    phases: int
    source: str
    lower: int = 0  # the largest count below `phases` seen in the current run of drops
    streak: int = 0  # consecutive meaningful observations below `phases`


class PhaseLearner:
    """Per connector: the phase count its session is booked on, from one reading a cycle."""

    def __init__(self, drop_cycles: int = DROP_CYCLES) -> None:
        if drop_cycles < 1:
            raise ValueError(f"drop_cycles: must be >= 1, got {drop_cycles}")
        self.drop_cycles = drop_cycles
        self._tracks: dict[Key, _Track] = {}

    def observe(self, key: Key, session_id: str, currents_a: Currents | None,
                configured: int) -> PhaseCount:  # fmt: skip
        """This cycle's reading for the connector's session (None: the charger reports no
        per-conductor currents, or none this cycle) -> the count to book."""
        track = self._track(key, session_id, configured)
        if currents_a is not None and track.source == "configured":
            # the charger reports its conductors: the safe side until one says more
            track.phases, track.source = min(ASSUMED_PHASES, configured), "assumed"
        seen = observed_phases(currents_a, configured) if currents_a is not None else None
        return self._adopt(track, seen, "measured")

    def observe_steps(self, key: Key, session_id: str, seen: int | None,
                      configured: int) -> PhaseCount:  # fmt: skip
        """For a charger without per-conductor currents below a circuit meter that can
        teach it (agent/control/phase_steps.py): the count a step of this session showed
        this cycle (None: no step) -> the count to book. Until a step shows one, it is
        booked as assumed, as a charger that reports its conductors is until its EV draws."""
        track = self._track(key, session_id, configured)
        if track.source == "configured":
            track.phases, track.source = min(ASSUMED_PHASES, configured), "assumed"
        return self._adopt(track, min(seen, configured) if seen is not None else None, "stepped")

    def _track(self, key: Key, session_id: str, configured: int) -> _Track:
        track = self._tracks.get(key)
        if track is None or track.session_id != session_id:
            track = self._tracks[key] = _Track(session_id, configured, "configured")
        return track

    def _adopt(self, track: _Track, seen: int | None, source: str) -> PhaseCount:
        """More phases than booked at once, fewer after `drop_cycles` observations in a row."""
        if seen is None:
            return PhaseCount(track.phases, track.source)
        if seen >= track.phases:
            track.phases, track.source = seen, source
            track.lower = track.streak = 0
        else:
            track.lower = max(track.lower, seen)
            track.streak += 1
            if track.streak >= self.drop_cycles:
                track.phases, track.source = track.lower, source
                track.lower = track.streak = 0
        return PhaseCount(track.phases, track.source)

    def measured(self, key: Key, session_id: str) -> int | None:
        """The count the connector's session was measured on (its charger's conductors),
        if it has been."""
        track = self._tracks.get(key)
        if track is None or track.session_id != session_id or track.source != "measured":
            return None
        return track.phases

    def restart(self, key: Key) -> None:
        """Learn the connector's session anew from its next reading (its charger switched
        phases: what it showed before says nothing of what it draws now)."""
        self._tracks.pop(key, None)

    def forget(self, live: Iterable[Key]) -> None:
        """Drop every connector not in `live` (its session ended)."""
        keep = set(live)
        for key in [k for k in self._tracks if k not in keep]:
            del self._tracks[key]
