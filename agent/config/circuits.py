"""The station's electrical tree in the settings: `[[station.circuits]]` and its checks.

    [[station.circuits]]
    id = "sub-1"              # unique
    parent = "main"           # another circuit; none: directly under the grid connection
    max_current_a = 32        # fuse, A per phase
    max_power_kw = 22         # optional
    meter = "sub-meter"       # optional: a [[devices]] meter measuring this circuit's feeder
    margin_a = 1.0            # kept free below the fuse when granting increases (A)
    pessimistic_base_a = 10   # non-EV load assumed while its meter is stale (A per phase)

Chargers name their circuit (`circuit = "sub-1"`), `phases` (1 or 3), `phase_rotation`
("L1L2L3": the grid phases their L1, L2, L3 are wired to) and `max_current_a`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

ROTATIONS = ("L1L2L3", "L1L3L2", "L2L1L3", "L2L3L1", "L3L1L2", "L3L2L1")


class CircuitSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, description="circuit id (sub-board, feeder)")
    parent: str | None = Field(None, description="the circuit it hangs off; none: the grid connection")
    max_power_kw: float | None = Field(None, gt=0, description="power limit of the circuit, kW")
    max_current_a: float | None = Field(None, gt=0, description="fuse rating, A per phase")
    meter: str | None = Field(
        None, description="[[devices]] meter whose per-phase currents measure this circuit"
    )
    margin_a: float = Field(
        1.0, ge=0, description="kept free below the fuse when granting increases, A per phase"
    )
    pessimistic_base_a: float | None = Field(
        None, ge=0,
        description="non-EV load assumed while the meter is stale, A per phase; default: "
                    "the rating minus the fallbacks of the chargers below",
    )


# What the checks read of settings.py's models (which import this module: protocols, not
# imports, keep the two free of a cycle).
class ChargerSettings(Protocol):
    @property
    def circuit(self) -> str | None: ...
    @property
    def phase_rotation(self) -> str: ...
    @property
    def max_power_kw(self) -> float: ...


class StationSettings(Protocol):
    @property
    def circuits(self) -> Sequence[CircuitSettings]: ...
    @property
    def chargers(self) -> Sequence[ChargerSettings]: ...


def ancestors(circuits: Sequence[CircuitSettings], start: str | None) -> Iterator[CircuitSettings]:
    """The circuit named start and every circuit above it (stops on unknown ids and cycles)."""
    by_id = {c.id: c for c in circuits}
    seen: set[str] = set()
    at = start
    while at is not None and at in by_id and at not in seen:
        seen.add(at)
        yield by_id[at]
        at = by_id[at].parent


def tree_problems(st: StationSettings) -> list[str]:
    """Errors: duplicate ids, unknown parents, cycles, chargers under unknown circuits."""
    problems: list[str] = []
    ids: set[str] = set()
    for i, c in enumerate(st.circuits):
        if c.id in ids:
            problems.append(f"station.circuits[{i}].id: duplicate circuit id {c.id!r}")
        ids.add(c.id)
    by_id = {c.id: c for c in st.circuits}
    for i, c in enumerate(st.circuits):
        if c.parent is not None and c.parent not in ids:
            problems.append(f"station.circuits[{i}].parent: no circuit {c.parent!r}")
            continue
        seen, at = {c.id}, c.parent
        while at is not None and at in by_id:
            if at in seen:
                problems.append(f"station.circuits[{i}].parent: the circuits form a cycle "
                                f"through {c.id!r}")
                break
            seen.add(at)
            at = by_id[at].parent
        if c.meter is not None and c.max_current_a is None and c.max_power_kw is None:
            problems.append(f"station.circuits[{i}].meter: a metered circuit needs "
                            "max_current_a or max_power_kw (nothing to hold it to)")
    for i, ch in enumerate(st.chargers):
        if ch.circuit is not None and ch.circuit not in ids:
            problems.append(f"station.chargers[{i}].circuit: no circuit {ch.circuit!r}")
        if ch.phase_rotation not in ROTATIONS:
            problems.append(f"station.chargers[{i}].phase_rotation: must be a permutation of "
                            f"L1L2L3 such as L2L3L1, got {ch.phase_rotation!r}")
    return problems


def tree_warnings(st: StationSettings) -> list[str]:
    """Legal but suspicious: a child fuse rated above its parent's."""
    by_id = {c.id: c for c in st.circuits}
    out = []
    for i, c in enumerate(st.circuits):
        parent = by_id.get(c.parent) if c.parent is not None else None
        if parent is None:
            continue
        if (c.max_current_a is not None and parent.max_current_a is not None
                and c.max_current_a > parent.max_current_a):
            out.append(f"station.circuits[{i}].max_current_a: {c.max_current_a:g} A is above its "
                       f"parent {parent.id!r}'s {parent.max_current_a:g} A")
        if (c.max_power_kw is not None and parent.max_power_kw is not None
                and c.max_power_kw > parent.max_power_kw):
            out.append(f"station.circuits[{i}].max_power_kw: {c.max_power_kw:g} kW is above its "
                       f"parent {parent.id!r}'s {parent.max_power_kw:g} kW")
    return out


def circuit_fallback_kw(st: StationSettings, charger: ChargerSettings, voltage: float) -> float:
    """The most a charger's fallback may be so that every fuse above it holds when every
    charger sits at its fallback: each circuit's current (and power) shared by rated power,
    counting a charger's fallback as if one phase carried it all (a 1-phase EV on a 3-phase
    charger does exactly that). inf when no circuit limits it."""
    limit = float("inf")
    for c in ancestors(st.circuits, charger.circuit):
        below = [ch for ch in st.chargers if any(a.id == c.id for a in ancestors(st.circuits, ch.circuit))]
        share = charger.max_power_kw / sum(ch.max_power_kw for ch in below)
        if c.max_current_a is not None:
            limit = min(limit, c.max_current_a * share * voltage / 1000)
        if c.max_power_kw is not None:
            limit = min(limit, c.max_power_kw * share)
    return limit
