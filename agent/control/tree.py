"""The station's electrical tree into the allocator's arrays (DESIGN.md "Allocation").

Circuits come from `[[station.circuits]]`, each charger's place from its settings. Per-circuit
meters are not read yet, so a circuit's base (non-EV) current is 0: its fuse bounds the EVs
below it, as evcc does for a circuit without a meter. An EV is taken to draw on all of its
charger's phases: the phase count learned from per-phase currents is not done yet.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.config.settings import StationSettings
    from allocator.arrays import StationArrays


def configure_tree(arrays: StationArrays, st: StationSettings) -> None:
    """Write the chargers (kW, circuit, phases, rotation, A) and circuits into the arrays."""
    if len(st.circuits) > arrays.max_circuits:
        raise ValueError(f"{len(st.circuits)} circuits, arrays sized for {arrays.max_circuits}")
    index = {c.id: k for k, c in enumerate(st.circuits)}
    arrays.tree = False
    arrays.voltage = st.voltage_v
    arrays.n_circuits = len(st.circuits)
    for k, c in enumerate(st.circuits):
        arrays.set_circuit(
            k, parent=index[c.parent] if c.parent is not None else -1,
            max_power=c.max_power_kw if c.max_power_kw is not None else math.inf,
            max_current=c.max_current_a if c.max_current_a is not None else math.inf,
        )
    for j, ch in enumerate(st.chargers):
        arrays.set_charger(
            j, ch.max_power_kw,
            circuit=index[ch.circuit] if ch.circuit is not None else -1,
            phases=ch.phases,
            rotation=tuple(int(ch.phase_rotation[2 * q + 1]) - 1 for q in range(3)),  # type: ignore[arg-type]
            max_current=ch.max_current_a if ch.max_current_a is not None else math.inf,
        )
