"""Circuit meters (`[[station.circuits]] meter = ...`): each metered circuit's base load and
the headroom its chargers' increases may use this cycle.

- Fresh meter: the circuit's base (non-EV) current per grid phase is what its meter measures
  minus what the EVs below it draw (agent/control/tree.py `ev_loads`), never below 0; its
  base power likewise. This is the grid meter's rule for power (agent/control/budget.py),
  per circuit and phase.
- Stale meter (no reading within `stale_after_s`, or a map without per-phase currents): that
  circuit alone degrades (mode `circuit_meter_stale:<id>`). Its base is its
  `pessimistic_base_a` when configured, else its rating minus the fallbacks of the chargers
  below it (each counted on one phase, as `circuit_fallback_kw` sizes them); the sessions
  below it are capped at their fallback limits, and no increase below it is granted.
- Safe apply, per circuit (agent/control/apply.py `circuits=`): an increase below a metered
  circuit is granted only out of the headroom its meter confirms: rating - `margin_a` - the
  most loaded phase measured - what limits in force below it allow but EVs do not draw yet.
  Increases and undrawn limits are counted as if all on one phase (a 1-phase EV puts all of
  its current on one conductor, and which one is not learned), so the rule holds whatever
  the EVs' phases. A reading older than one period confirms nothing (the EVs may have ramped
  up since): no increase then either.
- A limit lowered less than `control.limit_follow_s` ago counts there at its old value, as in
  the grid rule (agent/control/limit_lag.py `still_allowed`, passed in as `lagging`): the
  charger may not have followed yet, so the room it frees is not handed to another charger
  on the same sub-board before it is free.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.config.circuits import ancestors
from agent.control.tree import ev_loads
from agent.model.snapshot import Snapshot

if TYPE_CHECKING:
    from agent.config.settings import StationSettings

Key = tuple[str, int]
Phases = tuple[float, float, float]


@dataclass(frozen=True, slots=True)
class CircuitMeasure:
    circuit_id: str
    base_current_a: Phases  # what the allocator counts as non-EV load, A per grid phase
    base_power_kw: float
    stale: bool
    headroom_kw: float  # what increases below it may add this cycle (one-phase kW)
    keys: frozenset[Key]  # the connectors below it


def keys_below(st: StationSettings, circuit_id: str) -> frozenset[Key]:
    """Every connector of every charger wired below the circuit (sub-circuits included)."""
    return frozenset(
        (ch.id, i)
        for ch in st.chargers
        if any(a.id == circuit_id for a in ancestors(st.circuits, ch.circuit))
        for i in range(1, ch.connectors + 1)
    )


def measure_circuits(
    st: StationSettings,
    snap: Snapshot,
    limits: Mapping[Key, float | None],
    fallback_kw: Mapping[Key, float],
    period_s: float,
    lagging: Mapping[Key, float] | None = None,
) -> list[CircuitMeasure]:
    """One `CircuitMeasure` per metered circuit (none when no circuit has a meter).
    `limits`: the limit in force per connector (None: unknown, counted as its fallback,
    which is what the first write sets); `fallback_kw`: per connector; `lagging`:
    connectors lowered recently, not followed yet -> the old limit they may still draw up to
    (`LimitLag.still_allowed`, the same record the grid rule counts)."""
    if not snap.circuit_meters:
        return []
    lag = lagging or {}
    power = {(c.charger_id, c.idx): c.power_kw for c in snap.connectors()}
    ev_amps, ev_kw = ev_loads(st, power)
    index = {c.id: k for k, c in enumerate(st.circuits)}
    volts = st.voltage_v
    out: list[CircuitMeasure] = []
    for reading in snap.circuit_meters:
        k = index.get(reading.circuit_id)
        if k is None:
            continue
        c = st.circuits[k]
        keys = keys_below(st, c.id)
        fallback_sum = sum(fallback_kw.get(key, 0.0) for key in keys)
        outstanding = sum(max(0.0, _allowed(limits, fallback_kw, lag, key) - power.get(key, 0.0))
                          for key in keys)  # fmt: skip
        if reading.currents_a is None:
            out.append(_stale(c, keys, fallback_sum, volts))
            continue
        measured = reading.currents_a
        base = tuple(max(0.0, measured[p] - ev_amps[k][p]) for p in range(3))
        base_kw = max(0.0, reading.power_kw - ev_kw[k]) if reading.power_kw is not None else 0.0
        headroom = float("inf")
        if c.max_current_a is not None:
            headroom = (c.max_current_a - c.margin_a - max(measured)) * volts / 1000 - outstanding
        if c.max_power_kw is not None:
            if reading.power_kw is None:
                headroom = 0.0
            else:
                margin_kw = c.margin_a * volts / 1000
                headroom = min(headroom,
                               c.max_power_kw - margin_kw - reading.power_kw - outstanding)
        if reading.age_s > period_s:
            headroom = 0.0
        out.append(CircuitMeasure(c.id, base, base_kw, False, max(0.0, headroom), keys))  # type: ignore[arg-type]
    return out


def _allowed(limits: Mapping[Key, float | None], fallback_kw: Mapping[Key, float],
             lagging: Mapping[Key, float], key: Key) -> float:  # fmt: skip
    """What the connector may draw: its limit in force (unknown: its fallback), or the old
    one while the charger may not have followed a decrease yet."""
    value = limits.get(key)
    limit = fallback_kw.get(key, 0.0) if value is None else value
    return max(limit, lagging.get(key, limit))


def _stale(c, keys: frozenset[Key], fallback_sum_kw: float, volts: float) -> CircuitMeasure:  # noqa: ANN001
    if c.pessimistic_base_a is not None:
        amps = c.pessimistic_base_a
        kw = 3 * amps * volts / 1000
    else:
        rating = c.max_current_a if c.max_current_a is not None else float("inf")
        amps = max(0.0, rating - fallback_sum_kw * 1000 / volts) if rating != float("inf") else 0.0
        kw = max(0.0, c.max_power_kw - fallback_sum_kw) if c.max_power_kw is not None else 0.0
    return CircuitMeasure(c.id, (amps, amps, amps), kw, True, 0.0, keys)


def stale_keys(measures: Sequence[CircuitMeasure]) -> frozenset[Key]:
    """Connectors below a circuit whose meter is stale: held at their fallback limits."""
    return frozenset(key for m in measures if m.stale for key in m.keys)
