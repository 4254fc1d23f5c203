"""1 <-> 3 phase switching of AC chargers that can (issue 13): the decision, per connector.

Under a fuse tree a three-phase session needs 6 A on each of its charger's three grid phases
to charge at all (IEC 61851's minimum); on one phase it needs 6 A on the charger's first only.
When one of the other two phases is full, the allocator pauses the session although a
one-phase charge would fit. On a charger whose profile declares a phase switch register
(`phase_switch_pause_s`, Alfen 1215) the agent then switches it to one phase, and back to
three once they fit again with a margin for a hold time.

A switch, either way, is one sequence (the controller, agent/control/controller.py, feeds
this module each cycle; nothing here does I/O, and time comes from the injected clock):
1. Start: the session is booked on the count it goes to from the next cycle on (on one
   phase: its charger's first conductor, every EV's; back on three: as before the switch),
   and its target is held at 0 until the switch is over.
2. Command, once its limit in force is 0 and it draws nothing (the hold's decrease went out
   first), and, going up, once no decrease is outstanding anywhere: the allocation that
   booked it on three phases has lowered the others, and those limits are written,
   acknowledged and followed. Only then is the register written.
3. Confirm: the charger pauses charging for its pause, then charges on the new count; the
   switch is over when the pause has passed and the register reads the new count. The hold
   is released and the session's limit rises like any increase, out of the headroom the
   meters confirm, booked on the new count.
So the booking changes before the charger can draw on the new count, and the session draws
nothing from the moment its limit fell to 0 until an increase booked on the new count.

When: down, when the allocator pauses the session as booked now and would let it charge on
one phase at the one-phase minimum (`fits_one`, asked of the allocator itself), or when it
charges but, on one phase, would let a session the allocator pauses now charge too with
everyone charging now still charging (`relieves`: a minimum-pause that one switch ends is
a worse share than the switched session's smaller one, so it is not left to the pause
rotation to reach this session's turn); up, when it
would charge on three at the three-phase minimum plus a margin (`fits_three`) without a
break for `hold_s`. At most one switch per connector per `min_interval_s`, whichever way;
the margin and the hold keep a load that hovers at the edge from making it flap.

A switch the charger does not confirm `confirm_timeout_s` after its pause is given up: the
register is the truth, and the session is booked on what it reads (a charger set not to
allow switching ignores the write).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

log = logging.getLogger(__name__)

Key = tuple[str, int]

# A limit at or below this is 0 (the float a charger reads back), and a draw below this is
# nothing (meter noise of an EV that stopped).
ZERO_LIMIT_KW = 0.005
ZERO_DRAW_KW = 0.1


@dataclass(frozen=True, slots=True)
class SwitchRules:
    hold_s: float = 60.0
    min_interval_s: float = 300.0
    confirm_timeout_s: float = 30.0


@dataclass(frozen=True, slots=True)
class Booking:
    """How the controller books a connector's session this cycle."""

    mode: str  # "native": as learned; "one": on one phase; "back": as before the switch
    hold: bool = False  # its target is 0 (a switch under way)

    def words(self) -> str:
        if self.mode == "one":
            return "switching to 1 phase" if self.hold else "1-phase (switched)"
        return "switching to 3 phases" if self.hold else ""


NATIVE = Booking("native")


@dataclass(frozen=True, slots=True)
class Observation:
    """One cycle of a connector with a session on a charger that can switch."""

    charge_phases: int | None  # what its phase register reads (the count in effect)
    pause_s: float  # the charger's pause for a switch (its profile)
    limit_kw: float | None  # the limit in force, read back (None: unknown)
    drawing_kw: float
    paused: bool = False  # the allocator paused it as booked now (0 kW, binding minimum)
    fits_one: bool = False  # booked on one phase at its minimum there, it would charge
    fits_three: bool = False  # booked on three at the minimum plus the margin, it would
    settled: bool = False  # no decrease outstanding: every lower limit written and followed
    relieves: bool = False  # charging on three; on one it would, and a paused session too


@dataclass(slots=True)
class _Track:
    session_id: str
    phases: int  # the count in effect, as last confirmed
    target: int | None = None  # a switch under way to this count
    commanded_at: float | None = None  # when its register was written
    started_at: float = 0.0
    fit_since: float | None = None  # on one phase: since when three phases fit


class PhaseSwitcher:
    """Per connector: the switch under way, if any, and when to write the register."""

    def __init__(self, rules: SwitchRules, clock: Callable[[], float]) -> None:
        self.rules = rules
        self._clock = clock
        self._tracks: dict[Key, _Track] = {}
        self._last_switch: dict[Key, float] = {}  # per connector, across its sessions

    def booking(self, key: Key, session_id: str, charge_phases: int | None) -> Booking:
        """Before the allocation: how to book the connector's session this cycle."""
        track = self._tracks.get(key)
        if track is None or track.session_id != session_id:
            # A new session takes the charger as it is (a count left by the last one too).
            track = self._tracks[key] = _Track(session_id, charge_phases or 3)
        if track.target is None and charge_phases is not None and charge_phases != track.phases:
            # Changed behind our back (reset, someone else's write): the register is the truth.
            log.warning("charger %s/%d: phase register reads %d, expected %d", *key,
                        charge_phases, track.phases)  # fmt: skip
            track.phases, track.fit_since = charge_phases, None
        if track.target == 1:
            return Booking("one", hold=True)
        if track.target == 3:
            return Booking("back", hold=True)
        return Booking("one") if track.phases == 1 else NATIVE

    def step(self, key: Key, obs: Observation) -> int | None:
        """After the allocation and the write plan: start, advance or end a switch; the
        count to write to the connector's phase register this cycle, if any."""
        track = self._tracks.get(key)
        if track is None:
            return None
        now = self._clock()
        if track.target is None:
            self._maybe_start(key, track, obs, now)
            return None
        if track.commanded_at is None:
            idle = (obs.limit_kw is not None and obs.limit_kw <= ZERO_LIMIT_KW
                    and obs.drawing_kw <= ZERO_DRAW_KW)  # fmt: skip
            if idle and (track.target == 1 or obs.settled):
                track.commanded_at = self._last_switch[key] = now
                log.info("charger %s/%d: switching to %d phase(s)", *key, track.target)
                return track.target
            return None
        since = now - track.commanded_at
        if since >= obs.pause_s and obs.charge_phases == track.target:
            log.info("charger %s/%d: on %d phase(s) after %.1f s", *key, track.target,
                     now - track.started_at)  # fmt: skip
            self._end(track, track.target)
        elif since >= obs.pause_s + self.rules.confirm_timeout_s:
            read = obs.charge_phases or track.phases
            log.warning("charger %s/%d: switch to %d phase(s) not confirmed in %.0f s; the "
                        "register reads %s", *key, track.target, since, obs.charge_phases)
            self._end(track, read)
        return None

    def acknowledged(self, key: Key, ok: bool) -> None:
        """The register write of this cycle: a failed one is tried again next cycle."""
        track = self._tracks.get(key)
        if track is not None and not ok and track.target is not None:
            track.commanded_at = None

    def may_start(self, key: Key) -> bool:
        """No switch under way on this connector and its last one `min_interval_s` ago."""
        track = self._tracks.get(key)
        last = self._last_switch.get(key, float("-inf"))
        idle = track is None or track.target is None
        return idle and self._clock() - last >= self.rules.min_interval_s

    def busy(self) -> bool:
        """A switch under way anywhere (its booking may not be in effect yet)."""
        return any(t.target is not None for t in self._tracks.values())

    def forget(self, live: Iterable[Key]) -> None:
        """Drop the sessions that ended (the connector's last switch time stays)."""
        keep = set(live)
        for key in [k for k in self._tracks if k not in keep]:
            del self._tracks[key]

    def _maybe_start(self, key: Key, track: _Track, obs: Observation, now: float) -> None:
        if track.phases == 1:
            track.fit_since = (track.fit_since if track.fit_since is not None else now) \
                if obs.fits_three else None
        rested = now - self._last_switch.get(key, float("-inf")) >= self.rules.min_interval_s
        if track.phases == 3 and (obs.paused and obs.fits_one or obs.relieves) and rested:
            track.target = 1
        elif (track.phases == 1 and track.fit_since is not None and rested
              and now - track.fit_since >= self.rules.hold_s):  # fmt: skip
            track.target = 3
        else:
            return
        track.started_at = now
        log.info("charger %s/%d: session %s to %d phase(s)", *key, track.session_id,
                 track.target)  # fmt: skip

    @staticmethod
    def _end(track: _Track, phases: int) -> None:
        track.phases = phases
        track.target = track.commanded_at = track.fit_since = None
