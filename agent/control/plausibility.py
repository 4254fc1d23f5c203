"""Plausibility before belief: a charger reading that contradicts the charger's capability
is refused for that cycle, never booked.

Seen: negative powers from chargers that are not V2G booked as discharge (1,155-2,165 kWh
per session), after which the planner starved a connector while health said "ok". Refused:
- a connector of a charger not configured for V2G reporting power below -`NEGATIVE_KW`;
- a connector above its charger's rating by more than `OVER_FRACTION` (+ `OVER_KW`);
- a session's energy counter going backwards while the EV stays plugged in, compared with
  the previous reading received (not the last plausible one): a counter that really
  restarted (a charger reboot) is refused for one cycle and then believed, never held
  as implausible until it climbs past the old count. A new OCPP transaction id is a new
  session, whose counter starts again by right.
The whole charger's reading is then treated as not received (it counts as drawing its last
limit, like an unreachable charger), its connectors keep their last plausible values, the
cycle's modes gain `implausible:<charger>` (health names the device) and one WARNING line
per episode says why.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from agent.model.snapshot import ChargerState, ConnectorState, Snapshot

log = logging.getLogger(__name__)

NEGATIVE_KW = 0.5  # metering noise of an idle connector
OVER_FRACTION = 0.10
OVER_KW = 1.0
ENERGY_EPS_KWH = 0.01


class Plausibility:
    def __init__(self, chargers: Mapping[str, Any]) -> None:
        self.chargers = chargers  # id -> ChargerSettings (max_power_kw, v2g); kept current
        self._last: dict[str, ChargerState] = {}  # last plausible reading per charger
        self._seen: dict[str, ChargerState] = {}  # last reading received, plausible or not
        self.refused: dict[str, str] = {}  # charger -> why, this cycle

    def why(self, ch: ChargerState) -> str | None:
        cfg = self.chargers.get(ch.id)
        if cfg is None:
            return None
        seen = self._seen.get(ch.id)
        prev = {c.idx: c for c in seen.connectors} if seen is not None else {}
        ceiling = cfg.max_power_kw * (1 + OVER_FRACTION) + OVER_KW
        for c in ch.connectors:
            if c.power_kw < -NEGATIVE_KW and not cfg.v2g:
                return f"connector {c.idx} reads {c.power_kw:.1f} kW (discharging) but is not V2G"
            if abs(c.power_kw) > ceiling:
                return (f"connector {c.idx} reads {c.power_kw:.1f} kW, beyond the "
                        f"{cfg.max_power_kw:g} kW rating")  # fmt: skip
            p = prev.get(c.idx)
            if (p is not None and p.occupied and c.occupied
                    and c.transaction_id == p.transaction_id
                    and c.energy_kwh < p.energy_kwh - ENERGY_EPS_KWH):  # fmt: skip
                return (f"connector {c.idx} energy counter went back from "
                        f"{p.energy_kwh:.3f} to {c.energy_kwh:.3f} kWh")  # fmt: skip
        return None

    def filter(self, snap: Snapshot) -> Snapshot:
        """`snap` with every implausible charger reading replaced by its last plausible one,
        marked not received; `refused` says which and why."""
        refused: dict[str, str] = {}
        chargers = []
        for ch in snap.chargers:
            why = self.why(ch) if ch.reachable else None
            if ch.reachable:
                self._seen[ch.id] = ch
            if why is None:
                if ch.reachable:
                    self._last[ch.id] = ch
                chargers.append(ch)
                continue
            refused[ch.id] = why
            if ch.id not in self.refused:
                log.warning("charger %s: implausible reading refused (%s); counted as "
                            "drawing its last limit, nothing booked", ch.id, why)  # fmt: skip
            last = self._last.get(ch.id)
            conns = last.connectors if last is not None else tuple(
                ConnectorState(c.charger_id, c.idx, "?", 0.0, 0.0) for c in ch.connectors)
            chargers.append(ChargerState(ch.id, False, conns))
        for cid in self.refused.keys() - refused.keys():
            log.info("charger %s: readings plausible again", cid)
        self.refused = refused
        if not refused:
            return snap
        return dataclasses.replace(snap, chargers=tuple(chargers))

    def modes(self) -> frozenset[str]:
        return frozenset(f"implausible:{cid}" for cid in self.refused)
