"""An EV's phase count, learned from a circuit meter's per-phase step when its draw changes.

A charger that reports no per-conductor currents (agent/control/phase_learning.py learns
from those where it does) still shows its EV's phases to a meter above it that measures per
grid phase (`[[station.circuits]] meter`): when that one connector's draw steps by dP kW
while every other connector below the meter holds steady, the meter's currents change by
dP / (k V) A on the grid phases of the charger's first k conductors (through its rotation)
and by nothing on the others, for the EV's phase count k. This module compares the change
with each k the charger allows and names the one that explains it; no I/O, no clock: the
caller hands in each cycle's sample with the time it was taken.

What counts as a step, conservatively (an ambiguous one teaches nothing):
- Only fresh samples: the caller hands None for a stale or missing meter reading or a
  charger below it not read this cycle, and that restarts the comparison.
- The comparison runs from an anchor sample: the last one where something decisive happened
  (or the first). While no connector moves by more than `STEADY_KW` and one moves by less
  than `STEP_MIN_KW`, the anchor stays, so an EV ramping over a few readings still makes
  one step; an anchor older than `WINDOW_S` is replaced (the base load may have drifted) by
  the sample before this one, when there is one within the window, else by this one. Not by
  this one alone: a quiet station's anchor ages to the window every 5 s, and a step whose
  sample came just then compared with nothing and taught nothing. The EV then stayed booked
  as assumed (its charger's minimum, 4.14 kW) while it drew steadily, so no later step taught
  it, and a second 1-phase EV on its phase never got its minimum beside it (the sub-board day
  of tests/demo/test_demo_day.py: 124.57 kWh of 137, the first start of an evening lost at
  an anchor 5.004 s old, one EV paused for 4 of its 5.5 hours).
- Exactly one connector moved by at least `STEP_MIN_KW` and every other one by at most
  `STEADY_KW`: a step. Two connectors moving: a new anchor, and nothing learned unless all
  of them but one have a known phase count (below).
- Beside movers of known phases: the caller names the connectors whose EV's phases are
  known (measured on its charger's conductors, learned from a step, switched to one phase,
  or a 1-phase charger: agent/control/phase_step_inputs.py `known_phases`; never one merely
  assumed) with the grid phases it draws on. When every mover but one is among them, each
  known one's change dP' is taken off the meter's change as dP' / (k' V) on its k' phases,
  and the rest is the other mover's step, explained as a lone step is. What is taken off
  carries its own error (the mains voltage off the configured one, a power reading taken
  before or after the meter's), in proportion to dP' and even over the known mover's
  phases: no even offset turns one count's pattern into another's (any two differ on two
  phases or more, not evenly), so it can hide the right count, not name a wrong one; and
  the known movers together may move by at most `KNOWN_MAX_RATIO` times the step, where a
  5 % error stays within the tenth below. The sub-board day's S06 (tests/demo/
  test_demo_day.py): its start came in the cycle of the learned CP1's decrease that made
  room for it (1.5 kW, a hair under a step: the anchor stayed), and it stayed assumed for
  3.5 hours.
- The step is explained by k when every grid phase's change is within `RESIDUAL_FRACTION` of
  the step's current (dP / V) of dP / (k V) on the k phases and of 0 on the others. A base
  load moving at the same time, a power factor far from 1 or a meter on the wrong feeder
  leave no k within it: nothing learned. Two counts differ by at least a third of the step's
  current on some phase (k = 2 or 3: 0 or dP / 3V on the third), so at most one k is within
  a tenth of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

Key = tuple[str, int]
Phases = tuple[float, float, float]

STEP_MIN_KW = 1.5  # a clear step: 6.5 A on one phase, far above meter noise
STEADY_KW = 0.15  # what another connector may move by during a step (< 0.7 A)
RESIDUAL_FRACTION = 0.1  # of the step's current, per grid phase
WINDOW_S = 5.0  # an EV follows a new pilot within seconds (IEC 61851-1: 5 s)
KNOWN_MAX_RATIO = 2.0  # what movers of known phases may move together, per kW of the step


@dataclass(frozen=True, slots=True)
class MeterSample:
    """One fresh circuit meter reading and what the connectors below it drew then."""

    t: float  # when the meter reading was taken (monotonic s)
    currents_a: Phases  # per grid phase L1..L3
    power_kw: Mapping[Key, float]  # every connector below the meter


def explained_phases(step_kw: float, change_a: Phases, grid_phases: tuple[int, ...],
                     volts: float) -> int | None:  # fmt: skip
    """The phase count k that explains a meter's per-phase change `change_a` for one
    connector's step `step_kw`, its charger's conductors on `grid_phases` (0-based grid
    phase of its L1, L2, ...; as many as the charger has), or None when no k does."""
    step_a = step_kw * 1000 / volts
    tolerance = RESIDUAL_FRACTION * abs(step_a)
    for k in range(1, len(grid_phases) + 1):
        expected = [0.0, 0.0, 0.0]
        for p in grid_phases[:k]:
            expected[p] += step_a / k
        if all(abs(change_a[p] - expected[p]) <= tolerance for p in range(3)):
            return k
    return None


class StepWatch:
    """Per metered circuit: the phase counts its steps show, one sample a cycle."""

    def __init__(self, volts: float) -> None:
        self.volts = volts
        self._anchors: dict[str, MeterSample] = {}
        self._last: dict[str, MeterSample] = {}  # each circuit's sample before this one

    def observe(self, circuit_id: str, sample: MeterSample | None,
                learnable: Mapping[Key, tuple[int, ...]],
                known: Mapping[Key, tuple[int, ...]] | None = None) -> dict[Key, int]:  # fmt: skip
        """This cycle's sample of the circuit (None: not fresh) -> {connector: phase count}
        for a step this sample completes. `learnable`: the connectors whose phase count the
        meter may teach (agent/control/phase_step_inputs.py) -> the grid phases of their
        charger's conductors; every connector in the sample counts as a mover. `known`: the
        connectors whose EV's phases are known -> the grid phases it draws on."""
        anchor = self._anchors.get(circuit_id)
        if sample is None:
            self._anchors.pop(circuit_id, None)
            self._last.pop(circuit_id, None)
            return {}
        last = self._last.get(circuit_id)  # never older than the anchor
        if anchor is not None and last is not None and sample.t <= last.t:
            return {}  # the same reading again: nothing new
        self._last[circuit_id] = sample
        if anchor is not None and sample.t - anchor.t > WINDOW_S:
            # Too old to compare with: the sample before this one takes its place where it
            # is within the window, so this one is still compared (a step in it counts).
            if last is not None and last.t > anchor.t and sample.t - last.t <= WINDOW_S:
                anchor = self._anchors[circuit_id] = last
            else:
                anchor = None
        if anchor is None:
            self._anchors[circuit_id] = sample
            return {}
        keys = anchor.power_kw.keys() | sample.power_kw.keys()
        moves = {key: sample.power_kw.get(key, 0.0) - anchor.power_kw.get(key, 0.0)
                 for key in keys}  # fmt: skip
        moving = [key for key, d in moves.items() if abs(d) > STEADY_KW]
        if not moving or (len(moving) == 1 and abs(moves[moving[0]]) < STEP_MIN_KW):
            return {}  # nothing decisive yet: a ramp may still become a step
        self._anchors[circuit_id] = sample
        known = known or {}
        unknown = moving if len(moving) == 1 else [m for m in moving if m not in known]
        if len(unknown) != 1 or unknown[0] not in learnable:
            return {}
        key = unknown[0]
        others = [m for m in moving if m != key]
        if others and (abs(moves[key]) < STEP_MIN_KW or
                       sum(abs(moves[m]) for m in others) > KNOWN_MAX_RATIO * abs(moves[key])):
            return {}
        change = [sample.currents_a[p] - anchor.currents_a[p] for p in range(3)]
        for m in others:  # what the known movers' change put on their phases
            for p in known[m]:
                change[p] -= moves[m] * 1000 / (len(known[m]) * self.volts)
        k = explained_phases(moves[key], tuple(change), learnable[key], self.volts)  # type: ignore[arg-type]
        return {key: k} if k is not None else {}
