"""Circuit meters (`[[station.circuits]] meter = ...`): each metered circuit's base load and
the headroom its chargers' increases may use this cycle.

- Fresh meter: the circuit's base (non-EV) current per grid phase is what its meter measures
  minus what the EVs below it draw (agent/control/tree.py `ev_loads`: on their learned phase
  counts where the chargers report per-conductor currents), never below 0; its
  base power likewise. This is the grid meter's rule for power (agent/control/budget.py),
  per circuit and phase. A connector whose power is a sample older than the read (OCPP
  meter values) counts as agent/control/counted_draws.py says, as at the grid meter.
- Stale meter (no reading within `stale_after_s`, or a map without per-phase currents): that
  circuit alone degrades (mode `circuit_meter_stale:<id>`). Its base is its
  `pessimistic_base_a` when configured, else its rating minus the fallbacks of the chargers
  below it (each counted on one phase, as `circuit_fallback_kw` sizes them); the sessions
  below it are capped at their fallback limits, and no increase below it is granted.
- Safe apply, per circuit and grid phase (agent/control/apply.py `circuits=`): an increase
  below a metered circuit is granted only out of the headroom its meter confirms on each
  phase: rating - `margin_a` - that phase measured - what limits in force below it allow but
  EVs do not draw yet. Every EV draws on its charger's first k conductors, so of P kW at most
  P/V A lands on the charger's first conductor, P/2V on its second and P/3V on its third
  (1-, 2- or 3-phase EV alike): increases and undrawn limits count on each grid phase with
  those weights through the charger's rotation, so an EV on a rotated charger can start on
  its own phase while another phase is full. On a charger limited in amps per phase (its
  kW converted at its n phases) each conductor carries at most P/nV: 1/n on each. An EV
  measured on fewer conductors by its
  charger's own readings (agent/control/phase_learning.py) counts on those only (a count
  learned from a circuit meter's step does not narrow them: phase_learning.py says why):
  were it to take another one, the next reading books it (more phases are adopted at
  once), so the exposure is one period of its undrawn limit on its charger's other
  conductors. A reading older than one period confirms nothing (the EVs may have ramped
  up since): no increase then either.
- A limit lowered less than `control.limit_follow_s` ago counts there at its old value, as in
  the grid rule (agent/control/limit_lag.py `still_allowed`, passed in as `lagging`): the
  charger may not have followed yet, so the room it frees is not handed to another charger
  on the same sub-board before it is free.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.config.circuits import ancestors
from agent.control.counted_draws import CountedDraws, counted_draws
from agent.control.tree import ev_loads, phase_shares
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
    headroom_kw: float  # the tightest of `rooms` (kW), for the record
    keys: frozenset[Key]  # the connectors below it
    # (connector -> weight, kW): per grid phase, sum(weight x increase) may not pass the kW
    # (the phase's room in A x V); with max_power_kw one more entry, every weight 1.
    rooms: tuple[tuple[Mapping[Key, float], float], ...] = ()
    # Per room, its level: what the meter reads less the EVs' counted draws, kW (a phase's
    # A x V), which a pause hidden behind a sample lowers (agent/control/unseen_drops.py);
    # empty when no connector reports by samples.
    levels: tuple[float, ...] = ()
    drawn: tuple[Mapping[Key, float], ...] = ()  # per room, what its level subtracts per connector


def keys_below(st: StationSettings, circuit_id: str) -> frozenset[Key]:
    """Every connector of every charger wired below the circuit (sub-circuits included)."""
    return frozenset(
        (ch.id, i)
        for ch in st.chargers
        if any(a.id == circuit_id for a in ancestors(st.circuits, ch.circuit))
        for i in range(1, ch.connectors + 1)
    )


def conductor_weights(st: StationSettings, keys: frozenset[Key],
                      measured: Mapping[Key, int] | None = None,
                      in_amps: Mapping[Key, int] | None = None) -> list[dict[Key, float]]:
    """Per grid phase: each connector's share of a power increase that can land on that
    phase at most (1 on its charger's first conductor, 1/2 on the second, 1/3 on the third,
    through the charger's rotation). `measured`: connectors whose EV was measured on its
    charger's own conductors (agent/control/phase_learning.py), on m of them: 1/m on each
    of those, none on the others. An EV draws a power limit evenly over its phases, so a
    measured 3-phase EV's increase is P/3V a conductor; counted 1, 1/2, 1/3 like an EV of
    unknown phases, its increase back on three after a phase switch needed room on its
    second conductor the allocator had given to others, and waited there for ever at 0 kW
    (a charger taking its profiles in W: tests/ocpp/test_ocpp_phase_switch.py).
    `in_amps`: connectors whose limit goes out as A per phase of that many conductors (a
    charger limited in amps, its kW converted at that count): each of those conductors
    carries at most 1/n of it whatever the EV, so 1/n on each of them."""
    out: list[dict[Key, float]] = [{}, {}, {}]
    chargers = {ch.id: ch for ch in st.chargers}
    known = measured or {}
    amps = in_amps or {}
    for key in keys:
        ch = chargers[key[0]]
        if key in amps:
            n = max(1, min(ch.phases, amps[key]))
            for q in range(n):
                out[int(ch.phase_rotation[2 * q + 1]) - 1][key] = 1.0 / n
            continue
        if key in known:  # a power limit spreads evenly over the conductors it draws on
            n = max(1, min(ch.phases, known[key]))
            for q in range(n):
                out[int(ch.phase_rotation[2 * q + 1]) - 1][key] = 1.0 / n
            continue
        for q in range(ch.phases):
            out[int(ch.phase_rotation[2 * q + 1]) - 1][key] = 1.0 / (q + 1)
    return out


def measure_circuits(
    st: StationSettings,
    snap: Snapshot,
    limits: Mapping[Key, float | None],
    fallback_kw: Mapping[Key, float],
    period_s: float,
    lagging: Mapping[Key, float] | None = None,
    phases: Mapping[Key, int] | None = None,
    measured_phases: Mapping[Key, int] | None = None,
    draws: CountedDraws | None = None,
    in_amps: Mapping[Key, int] | None = None,
) -> list[CircuitMeasure]:
    """One `CircuitMeasure` per metered circuit (none when no circuit has a meter).
    `limits`: the limit in force per connector (None: unknown, counted as its fallback,
    which is what the first write sets); `fallback_kw`: per connector; `lagging`:
    connectors lowered recently, not followed yet -> the old limit they may still draw up to
    (`LimitLag.still_allowed`, the same record the grid rule counts); `phases`: sessions'
    booked phase counts, where they differ from their chargers' (tree.py `ev_loads`);
    `measured_phases`: those of them measured on their chargers' own conductors, not
    assumed or learned from a circuit meter's step (`conductor_weights`); `draws`: what
    each connector counts as drawing, the same as at the grid meter (counted_draws.py;
    None: its rule without the limit lag's records); `in_amps`: connectors limited in A per
    phase of that many conductors (`conductor_weights`)."""
    if not snap.circuit_meters:
        return []
    lag = lagging or {}
    draws = draws or counted_draws(snap, limits)
    power, base_power = draws.drawn, draws.base
    ev_amps, ev_kw = ev_loads(st, base_power, phases)
    drawn_amps, drawn_kw = ev_loads(st, power, phases) if base_power != power else (ev_amps, ev_kw)
    index = {c.id: k for k, c in enumerate(st.circuits)}
    chargers = {ch.id: ch for ch in st.chargers}
    booked = phases or {}
    # Levels are followed for sampled connectors only (unseen_drops.py): a station whose
    # chargers are all read live (Modbus) has nothing to hide and skips them.
    follow = any(c.power_ts is not None for c in snap.connectors())
    volts = st.voltage_v
    out: list[CircuitMeasure] = []
    for reading in snap.circuit_meters:
        k = index.get(reading.circuit_id)
        if k is None:
            continue
        c = st.circuits[k]
        keys = keys_below(st, c.id)
        if reading.currents_a is None:
            fallback_sum = sum(fallback_kw.get(key, 0.0) for key in keys)
            out.append(_stale(c, keys, fallback_sum, volts))
            continue
        measured = reading.currents_a
        base = tuple(max(0.0, measured[p] - ev_amps[k][p]) for p in range(3))
        base_kw = max(0.0, reading.power_kw - ev_kw[k]) if reading.power_kw is not None else 0.0
        undrawn = {key: max(0.0, allowed_limit(limits, fallback_kw, lag, key) - power.get(key, 0.0))
                   for key in keys}  # fmt: skip
        rooms: list[tuple[Mapping[Key, float], float]] = []
        levels: list[float] = []
        drawn: list[Mapping[Key, float]] = []
        if c.max_current_a is not None:
            shares = ({key: phase_shares(chargers[key[0]], booked.get(key, 3)) for key in keys}
                      if follow else {})  # fmt: skip
            for p, weights in enumerate(conductor_weights(st, keys, measured_phases, in_amps)):
                pending = sum(w * undrawn[key] for key, w in weights.items())
                room = (c.max_current_a - c.margin_a - measured[p]) * volts / 1000 - pending
                rooms.append((weights, room))
                if follow:
                    levels.append((measured[p] - drawn_amps[k][p]) * volts / 1000)
                    drawn.append({key: power.get(key, 0.0) * shares[key][p] for key in keys})
        if c.max_power_kw is not None:
            room = 0.0
            if reading.power_kw is not None:
                margin_kw = c.margin_a * volts / 1000
                room = c.max_power_kw - margin_kw - reading.power_kw - sum(undrawn.values())
            rooms.append((dict.fromkeys(keys, 1.0), room))
            if follow:
                levels.append(reading.power_kw - drawn_kw[k] if reading.power_kw is not None
                              else float("nan"))
                drawn.append({key: power.get(key, 0.0) for key in keys})
        if reading.age_s > period_s:  # an old reading: no increase, and no level to follow
            rooms = [(weights, 0.0) for weights, _ in rooms]
            levels = [math.nan for _ in levels]
        rooms = [(weights, max(0.0, room)) for weights, room in rooms]
        headroom = min((room for _, room in rooms), default=float("inf"))
        out.append(CircuitMeasure(c.id, base, base_kw, False, headroom, keys,  # type: ignore[arg-type]
                                  tuple(rooms), tuple(levels), tuple(drawn)))
    return out


def allowed_limit(limits: Mapping[Key, float | None], fallback_kw: Mapping[Key, float],
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
    return CircuitMeasure(c.id, (amps, amps, amps), kw, True, 0.0, keys,
                          ((dict.fromkeys(keys, 1.0), 0.0),))


def stale_keys(measures: Sequence[CircuitMeasure]) -> frozenset[Key]:
    """Connectors below a circuit whose meter is stale: held at their fallback limits."""
    return frozenset(key for m in measures if m.stale for key in m.keys)
