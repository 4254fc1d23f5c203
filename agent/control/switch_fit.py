"""Would a session charge booked on another phase count? The allocator itself is asked, for
the phase switch decision (agent/control/phase_switch.py, wired in by the controller).

A question re-solves this cycle's arrays with one session's row (and, going back to three,
the circuits' bases) changed, reads the answer and puts the row and bases back; the caller
solves the real inputs once more after its questions, since the battery and grid power are
read from the last solve. A session fits when it would charge and every session charging
now still would: the allocator's pause order would otherwise make room for it by pausing
another, which is a different question (whose turn it is), not whether there is room.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from agent.config.circuits import ancestors
from agent.config.settings import ChargerSettings, StationSettings
from agent.control.decision import SessionRow
from agent.control.tree import set_bases, start_reserves

if TYPE_CHECKING:
    from allocator.arrays import StationArrays

Key = tuple[str, int]
Bases = Mapping[str, tuple[tuple[float, float, float], float]]  # circuit -> (A per phase, kW)
Extra = dict[str, list[float]]  # circuit -> A per grid phase taken beyond a booking


class FitQuestions:
    def __init__(self, arrays: StationArrays, charger_index: Mapping[str, int]) -> None:
        self.arrays = arrays
        self.charger_index = charger_index

    def fits(self, st: StationSettings, bases: Bases, i: int, row: SessionRow,
             charging: Sequence[int], phases: int, min_kw: float,
             extra: Extra | None = None, paused: Sequence[int] = ()) -> bool:  # fmt: skip
        """Would session row `i` charge, booked on `phases` (0: its charger's) at `min_kw`,
        with `extra` taken from those circuits, and the rows `charging` still charge? With
        `paused`: and would at least one of those rows charge too?"""
        self._set_row(i, row, phases=phases, min_power=min_kw)
        if extra:
            set_bases(self.arrays, st, plus(bases, extra))
        self.arrays.solve()
        allocation = self.arrays.allocation
        fits = float(allocation[i]) > 0.0 and all(float(allocation[j]) > 0.0 for j in charging)
        if paused:
            fits = fits and any(float(allocation[j]) > 0.0 for j in paused)
        self._set_row(i, row)
        if extra:
            set_bases(self.arrays, st, bases)
        return fits

    def _set_row(self, i: int, r: SessionRow, *, phases: int | None = None,
                 min_power: float | None = None) -> None:
        self.arrays.set_session(
            i, charger=self.charger_index[r.charger_id], vehicle_max=r.vehicle_max_kw,
            power_cap=math.inf if r.power_cap_kw is None else r.power_cap_kw,
            min_power=r.min_power_kw if min_power is None else min_power,
            priority=r.priority, phases=r.phases if phases is None else phases,
        )  # fmt: skip


def back_on_three(st: StationSettings, ch: ChargerSettings, key: Key, min_kw: float,
                  reports: bool, margin_a: float) -> tuple[int, float, Extra]:  # fmt: skip
    """How a session now on one phase would be booked back on three: (phases for the kernel,
    0 for its charger's; minimum kW; what it takes from each circuit above it beyond that).
    As an EV of unknown phases starts where its charger `reports` its conductors (its
    minimum on the first, the start reserve on the others: tree.start_reserves), else as
    configured; plus `margin_a` A on each of its charger's grid phases (on a station without
    circuits, its kW on the minimum)."""
    if not st.circuits:
        return 0, min_kw + margin_a * ch.phases * st.voltage_v / 1000, {}
    extra: Extra = start_reserves(st, {key: min_kw}) if reports else {}
    for c in ancestors(st.circuits, ch.circuit):
        held = extra.setdefault(c.id, [0.0, 0.0, 0.0])
        for q in range(ch.phases):
            held[int(ch.phase_rotation[2 * q + 1]) - 1] += margin_a
    return (1 if reports else 0), min_kw, extra


def settled(current: Mapping[Key, float | None], lagging: Mapping[Key, float],
            targets: Mapping[Key, float], slack_kw: float) -> bool:
    """No decrease outstanding: every limit in force, and every lowered one the charger may
    not have followed yet (limit_lag.py), at most its target within `slack_kw` (the deadband
    the apply step leaves unwritten)."""
    return all(cur is not None and max(cur, lagging.get(k, cur)) <= targets.get(k, 0.0) + slack_kw
               for k, cur in current.items())  # fmt: skip


def plus(bases: Bases, extra: Mapping[str, list[float]]
         ) -> dict[str, tuple[tuple[float, float, float], float]]:  # fmt: skip
    """Circuit bases with `extra` A per grid phase added (power unchanged)."""
    out = dict(bases)
    for cid, amps in extra.items():
        base_a, base_kw = out.get(cid, ((0.0, 0.0, 0.0), 0.0))
        out[cid] = ((base_a[0] + amps[0], base_a[1] + amps[1], base_a[2] + amps[2]), base_kw)
    return out
