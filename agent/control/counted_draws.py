"""What each connector counts as drawing where a meter's reading is split into the EVs' draw
and the base load (the grid meter's: agent/control/budget.py; each circuit meter's:
agent/control/circuit_meters.py). One rule for both: the same stale sample once read as
base load at the grid meter and not at a sub-board's (or the other way round) is how the
grid's budget fell to 19 kW under a 60 kW connection for a whole minute over OCPP.

A draw that is a sample taken before the read (OCPP meter values, `power_ts` set):
- counts at most at the limit in force, and at most at the lowest limit since a decrease
  until a sample taken after it is in hand (`LimitLag.draw_bounds`): an EV the agent has
  stopped still shows its old draw for up to a meter interval, and subtracted from the meter
  that draw made the base read 0 (a circuit's room too large: 37 A on a 32 A sub-board),
  or the meter read below the chargers' draw (the grid meter judged implausible, the safe
  budget for a minute). Errs on the safe side: the base load reads high while the EV
  follows the decrease;
- in the base load only, counts at least at the limit in force while an increase is not
  seen yet (`LimitLag.base_draws`): the meter shows the EV's ramp before its sample does,
  and the ramp read as base load took the EV's increase back again at the next cycle
  (paused and restarted every few seconds behind a sub-board; lowered again every minute
  behind the grid meter). The undrawn part keeps the sample, so the headroom for increases
  still counts the raised limit as power the EV may take (agent/control/apply.py).
Draws read live (Modbus) are taken as read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from agent.model.snapshot import ConnectorState, Snapshot

Key = tuple[str, int]


@dataclass(frozen=True, slots=True)
class CountedDraws:
    drawn: dict[Key, float]  # the EVs' draw: what the headroom counts as already drawn
    base: dict[Key, float]  # what the base load subtracts from a meter's reading


def _bounded(c: ConnectorState) -> float:
    if c.power_ts is not None and c.limit_kw is not None:
        return min(c.power_kw, max(0.0, c.limit_kw))
    return c.power_kw


def counted_draws(snap: Snapshot, limits: Mapping[Key, float | None],
                  draw_bounds: Mapping[Key, float] | None = None,
                  raised: Iterable[Key] = ()) -> CountedDraws:
    """Every connector of the snapshot (reachable or not). `limits`: the limit in force per
    connector (None: unknown); `draw_bounds`: `LimitLag.draw_bounds`; `raised`:
    `LimitLag.base_draws`."""
    bounds = draw_bounds or {}
    drawn = {}
    for c in snap.connectors():
        key = (c.charger_id, c.idx)
        kw = _bounded(c)
        drawn[key] = min(kw, bounds.get(key, kw))
    base = dict(drawn)
    for key in raised:
        limit = limits.get(key)
        if key in base and limit is not None:
            base[key] = max(base[key], limit)
    return CountedDraws(drawn, base)
