"""The station's electrical tree into the allocator's arrays (DESIGN.md "Allocation").

Circuits come from `[[station.circuits]]`, each charger's place from its settings. A circuit
without a meter has a base (non-EV) current of 0: its fuse bounds the EVs below it, as evcc
does for a circuit without a meter; a metered one gets its base each cycle (`set_bases`,
from agent/control/circuit_meters.py). An EV is taken to draw on all of its charger's phases
unless its phase count was learned from the charger's per-conductor currents
(agent/control/phase_learning.py): then on that many, the charger's first conductors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from agent.config.circuits import ancestors

if TYPE_CHECKING:
    from agent.config.circuits import CircuitSettings
    from agent.config.settings import ChargerSettings, StationSettings
    from allocator.arrays import StationArrays


def shared_limits(c: CircuitSettings, volts: float) -> tuple[float, float]:
    """What the allocator shares out under a circuit: (kW, A per phase). Below a metered
    circuit the apply step grants increases only up to `margin_a` under its rating
    (agent/control/circuit_meters.py), so the allocator shares that much, as it shares the
    grid capacity less `headroom_margin_kw`: else a share it cannot grant, such as an EV's
    start at its minimum, would wait for ever in the margin."""
    margin_a = c.margin_a if c.meter is not None else 0.0
    max_power = c.max_power_kw - margin_a * volts / 1000 if c.max_power_kw is not None else math.inf
    max_current = c.max_current_a - margin_a if c.max_current_a is not None else math.inf
    return max(0.0, max_power), max(0.0, max_current)


def configure_tree(arrays: StationArrays, st: StationSettings) -> None:
    """Write the chargers (kW, circuit, phases, rotation, A) and circuits into the arrays."""
    if len(st.circuits) > arrays.max_circuits:
        raise ValueError(f"{len(st.circuits)} circuits, arrays sized for {arrays.max_circuits}")
    index = {c.id: k for k, c in enumerate(st.circuits)}
    arrays.tree = False
    arrays.voltage = st.voltage_v
    arrays.n_circuits = len(st.circuits)
    for k, c in enumerate(st.circuits):
        max_power, max_current = shared_limits(c, st.voltage_v)
        arrays.set_circuit(
            k, parent=index[c.parent] if c.parent is not None else -1,
            max_power=max_power, max_current=max_current,
        )
    for j, ch in enumerate(st.chargers):
        arrays.set_charger(
            j, ch.max_power_kw,
            circuit=index[ch.circuit] if ch.circuit is not None else -1,
            phases=ch.phases,
            rotation=tuple(int(ch.phase_rotation[2 * q + 1]) - 1 for q in range(3)),  # type: ignore[arg-type]
            max_current=ch.max_current_a if ch.max_current_a is not None else math.inf,
        )


def ev_loads(st: StationSettings, power_kw: Mapping[tuple[str, int], float],
             phases: Mapping[tuple[str, int], int] | None = None,
             ) -> tuple[list[list[float]], list[float]]:  # fmt: skip
    """What the EVs below each circuit draw, from the connectors' measured power: A per grid
    phase [L1, L2, L3] and kW, per circuit in `st.circuits` order. An estimate: each EV is
    taken to draw on all of its charger's phases, or on the count in `phases` (connector ->
    1..3, learned) on its charger's first conductors."""
    index = {c.id: k for k, c in enumerate(st.circuits)}
    amps = [[0.0, 0.0, 0.0] for _ in st.circuits]
    kw = [0.0 for _ in st.circuits]
    learned = phases or {}
    for ch in st.chargers:
        rotation = [int(ch.phase_rotation[2 * q + 1]) - 1 for q in range(3)]
        drawn = 0.0
        per_phase = [0.0, 0.0, 0.0]
        for i in range(1, ch.connectors + 1):
            p_kw = power_kw.get((ch.id, i), 0.0)
            n = min(learned.get((ch.id, i), ch.phases), ch.phases)
            drawn += p_kw
            for q in range(n):
                per_phase[rotation[q]] += p_kw * 1000 / (n * st.voltage_v)
        at = ch.circuit
        seen: set[str] = set()
        while at is not None and at in index and at not in seen:
            seen.add(at)
            k = index[at]
            kw[k] += drawn
            for p in range(3):
                amps[k][p] += per_phase[p]
            at = st.circuits[k].parent
    return amps, kw


def phase_shares(ch: ChargerSettings, n: int) -> list[float]:
    """The share of a connector's kW on each grid phase [L1, L2, L3], as `ev_loads` counts
    it: 1/n on each of its charger's first n conductors (at most its phases) through the
    rotation."""
    n = min(n, ch.phases)
    out = [0.0, 0.0, 0.0]
    for q in range(n):
        out[int(ch.phase_rotation[2 * q + 1]) - 1] += 1.0 / n
    return out


START_SLACK = (1.05, 0.2)  # x and + A on a start's reserve (see start_reserves)


def start_reserves(st: StationSettings, waiting: Mapping[tuple[str, int], float]
                   ) -> dict[str, list[float]]:  # fmt: skip
    """A per grid phase [L1, L2, L3] each circuit keeps free for EVs whose phases are not
    known yet (`waiting`: connector -> its minimum kW), beyond what their one-phase booking
    holds on their charger's first conductor: were the EV on 2 or 3 phases, its start puts
    up to 1/2 of it on the second conductor and 1/3 on the third, and the apply step grants
    a start only when that fits (agent/control/circuit_meters.py `conductor_weights`).
    Without this the allocator would hand those phases to others and the start would wait
    for ever. `START_SLACK` more, so that measurement noise (a sagging voltage, rounding)
    does not leave the start a hair short of its room."""
    chargers = {ch.id: ch for ch in st.chargers}
    out: dict[str, list[float]] = {}
    for (cid, _idx), min_kw in waiting.items():
        ch = chargers[cid]
        amps = [0.0, 0.0, 0.0]
        for q in range(1, ch.phases):
            share = min_kw * 1000 / ((q + 1) * st.voltage_v)
            amps[int(ch.phase_rotation[2 * q + 1]) - 1] += share * START_SLACK[0] + START_SLACK[1]
        for c in ancestors(st.circuits, ch.circuit):
            held = out.setdefault(c.id, [0.0, 0.0, 0.0])
            for p in range(3):
                held[p] += amps[p]
    return out


def set_bases(arrays: StationArrays, st: StationSettings,
              bases: Mapping[str, tuple[tuple[float, float, float], float]]) -> None:
    """This cycle's base (non-EV) current per phase and power of each circuit, by id
    (agent/control/circuit_meters.py); a circuit not named keeps a base of 0."""
    index = {c.id: k for k, c in enumerate(st.circuits)}
    for k, c in enumerate(st.circuits):
        current, power = bases.get(c.id, ((0.0, 0.0, 0.0), 0.0))
        max_power, max_current = shared_limits(c, st.voltage_v)
        arrays.set_circuit(
            k, parent=index[c.parent] if c.parent is not None else -1,
            max_power=max_power, max_current=max_current,
            base_power=power, base_current=current,
        )


def circuit_loads(st: StationSettings, power_kw: dict[tuple[str, int], float],
                  measured: Mapping[str, tuple[tuple[float, float, float], float | None]]
                  | None = None,
                  phases: Mapping[tuple[str, int], int] | None = None) -> list[dict]:  # fmt: skip
    """Each circuit's load now, A per grid phase [L1, L2, L3] and kW, with its ratings: what
    its meter measures (`measured`: circuit id -> (A per phase, kW or None), fresh readings
    only), else the EVs' estimate from the connectors' power (see `ev_loads`; other loads
    are not in it)."""
    amps, kw = ev_loads(st, power_kw, phases)
    for k, c in enumerate(st.circuits):
        if measured and c.id in measured:
            currents, power = measured[c.id]
            amps[k] = list(currents)
            kw[k] = power if power is not None else kw[k]
    return [{"id": c.id, "parent": c.parent, "max_current_a": c.max_current_a,
             "max_power_kw": c.max_power_kw, "current_a": [round(a, 2) for a in amps[k]],
             "power_kw": round(kw[k], 3)} for k, c in enumerate(st.circuits)]
