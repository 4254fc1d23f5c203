"""What agent/control/phase_steps.py learns from, out of the settings and the snapshot: which
connectors a circuit meter may teach their phase count, and each metered circuit's sample.

A charger's EV phases are taught by circuit meters only where a wrong lower count stays safe
(agent/control/phase_learning.py says why): every circuit above the charger that has a
per-phase rating (`max_current_a`) has a meter, which counts current the allocator did not
book as base load at its next reading. Below an unmetered fuse nothing would count it, so
the charger keeps its configured count there, as before this learning existed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from agent.config.circuits import ancestors
from agent.control.circuit_meters import keys_below
from agent.control.phase_learning import PhaseCount
from agent.control.phase_steps import Key, MeterSample
from agent.model.snapshot import Snapshot

if TYPE_CHECKING:
    from agent.config.settings import StationSettings


def step_taught(st: StationSettings) -> dict[str, dict[Key, tuple[int, ...]]]:
    """Per metered circuit: the connectors whose phase count its steps may teach -> the grid
    phases (0-based) of their charger's conductors, L1 first."""
    out: dict[str, dict[Key, tuple[int, ...]]] = {}
    for ch in st.chargers:
        if ch.phases == 1:  # nothing to learn
            continue
        above = list(ancestors(st.circuits, ch.circuit))
        metered = [c for c in above if c.meter is not None]
        if not metered or any(c.meter is None for c in above if c.max_current_a is not None):
            continue
        grid_phases = conductor_phases(ch.phase_rotation, ch.phases)
        for c in metered:
            for i in range(1, ch.connectors + 1):
                out.setdefault(c.id, {})[(ch.id, i)] = grid_phases
    return out


def conductor_phases(rotation: str, conductors: int) -> tuple[int, ...]:
    """The grid phases (0-based) of a charger's first `conductors` conductors, L1 first."""
    return tuple(int(rotation[2 * q + 1]) - 1 for q in range(conductors))


def known_phases(st: StationSettings, counts: Mapping[Key, PhaseCount]
                 ) -> dict[Key, tuple[int, ...]]:  # fmt: skip
    """The connectors whose EV's phases are known, from last cycle's counts -> the grid
    phases it draws on: measured on its charger's conductors, learned from a meter's step,
    switched to one phase, or on a 1-phase charger. Not one merely assumed (nor one
    configured on three: its EV may draw on one): a step beside it teaches nothing."""
    chargers = {ch.id: ch for ch in st.chargers}
    out: dict[Key, tuple[int, ...]] = {}
    for key, count in counts.items():
        ch = chargers.get(key[0])
        if ch is None:
            continue
        if count.learned or count.source == "switched" or ch.phases == 1:
            out[key] = conductor_phases(ch.phase_rotation, min(count.phases, ch.phases))
    return out


def metered_keys(st: StationSettings) -> dict[str, frozenset[Key]]:
    """Per metered circuit: the connectors below it (what `step_samples` reads)."""
    return {c.id: keys_below(st, c.id) for c in st.circuits if c.meter is not None}


def step_samples(below: Mapping[str, frozenset[Key]], snap: Snapshot, period_s: float
                 ) -> dict[str, MeterSample | None]:  # fmt: skip
    """Each metered circuit's sample this cycle, None where it says nothing reliable: the
    meter's reading missing, without per-phase currents or older than one period, or a
    charger below it not read this cycle (its connectors hold old values), or a draw
    sampled more than one period ago (OCPP meter values). `below`: `metered_keys`."""
    now = snap.ts.timestamp()
    conns = {(c.charger_id, c.idx): c for c in snap.connectors()}
    reachable = {ch.id: ch.reachable for ch in snap.chargers}
    out: dict[str, MeterSample | None] = {}
    for reading in snap.circuit_meters:
        keys = below.get(reading.circuit_id, frozenset())
        read = all(reachable.get(key[0], False) and key in conns for key in keys)
        if (reading.currents_a is None or reading.age_s > period_s or not read
                or not all(_drawn_lately(conns[key].power_ts, now, period_s) for key in keys)):
            out[reading.circuit_id] = None
            continue
        power: Mapping[Key, float] = {key: conns[key].power_kw for key in keys}
        out[reading.circuit_id] = MeterSample(snap.t - reading.age_s, reading.currents_a, power)
    return out


def _drawn_lately(power_ts: float | None, now: float, period_s: float) -> bool:
    return power_ts is None or now - power_ts <= period_s
