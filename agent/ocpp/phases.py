"""1 <-> 3 phase switching of one OCPP connector: the count its profiles carry, and the
count in effect that the control loop reads as `charge_phases` (docs/ocpp.md, "Phase
switching"; the decision is agent/control/phase_switch.py's, as for Modbus chargers).

OCPP has no phase register: a switch is a connector profile whose period carries the new
`numberPhases` (1.6 7.13, 2.0.1 ChargingSchedulePeriodType). So:
- `want` is what every profile sent from now on carries (set by `set_phases`);
- the count in effect is the count of the last *accepted* profile, but only once the
  charger's pause has passed since it was accepted: until then the old count is read, so
  the switcher keeps its hold (target 0) for the whole pause, as with a register that
  changes when the charger has switched;
- a profile that changes the count and is not accepted (Rejected, a CallError, no answer)
  leaves the old count: `want` falls back to it, so the next profile (the limit resent)
  carries the count the charger is on, and the switcher, reading the old count after the
  pause, gives the switch up (`confirm_timeout_s`) and books what it reads;
- per-phase Current.Import meter values, where the charger sends them, are the connector's
  `currents_a`, from which the control loop learns the EV's phase count as from a Modbus
  charger's conductors (agent/control/phase_learning.py): only samples taken after the last
  switch's pause ended (a sample from before says nothing of the draw after it), so back on
  three the EV is booked on the conductors it draws on from its first sample there, and its
  own draw on L2 and L3 is not read as its circuit's base load. They also overrule a count
  of one: current on a second conductor means it charges on three whatever it accepted (a
  charger that takes numberPhases without acting on it). Booked on one phase and sent A
  per phase for one, such a connector would draw three times its share.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

# A conductor carrying at least this much charges (below: meter noise, a contactor's leak).
DRAWING_A = 1.0


@dataclass(frozen=True, slots=True)
class PhaseCaps:
    """What the charger can do, known after its set-up (None before)."""

    pause_s: float  # how long it stops charging to switch (configured: OCPP does not say)
    phase_to_use: frozenset[int] = frozenset()  # 2.0.1 EVSEs with ACPhaseSwitchingSupported


@dataclass(slots=True)
class ConnectorPhases:
    effect: int = 3  # the count of the last accepted profile
    want: int = 3  # the count profiles carry from now on
    before: int | None = None  # the count before the last switch, read until its pause ends
    switched_at: float | None = None  # when the profile that changed the count was accepted
    currents: tuple[float, float, float] | None = None  # last per-conductor A, if reported

    def request(self, phases: int) -> None:
        self.want = phases

    def answered(self, phases: int, accepted: bool, now: float, where: str) -> None:
        """The charger's answer to a profile that carried `phases`."""
        if accepted:
            if phases != self.effect:
                self.before, self.switched_at, self.effect = self.effect, now, phases
                self.currents = None  # a sample from before the switch says nothing after it
            return
        if phases != self.effect and self.want == phases:
            log.warning("%s: profile on %d phase(s) not accepted: stays on %d", where, phases,
                        self.effect)  # fmt: skip
            self.want = self.effect

    def observe(self, currents: tuple[float, float, float]) -> None:
        self.currents = currents

    def reading(self, now: float, pause_s: float, where: str) -> int:
        """The count in effect, as the control loop reads it."""
        if self.switched_at is not None:
            if now - self.switched_at < pause_s:
                return self.before or self.effect
            self.switched_at = self.before = None
            self.currents = None  # samples from before the pause ended say nothing of now
        c = self.currents
        if self.effect == 1 and c is not None and (c[1] >= DRAWING_A or c[2] >= DRAWING_A):
            log.warning("%s: on one phase by its profile, but draws %s A: counted on 3",
                        where, [round(a, 1) for a in c])  # fmt: skip
            self.effect = self.want = 3
        return self.effect

    def reset(self, phases: int) -> None:
        """A new charger boot: it starts on its own default until a profile says more."""
        self.effect = self.want = phases
        self.before = self.switched_at = self.currents = None

