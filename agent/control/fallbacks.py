"""Give every charger its fallback limit at start, sizing the others around a charger
whose fallback is fixed in its own configuration and larger than its share.

The station's promise when the agent goes silent: the chargers' fallbacks add up to at most
the capacity left under the pessimistic base load (AgentSettings.fallback_kw). Alfen's and
Keba's fallback ("safe"/"failsafe") current is set in the charger and only readable over
Modbus; when one exceeds its share (drivers' FallbackRefused names the setting to change),
the excess is taken from the other chargers' fallbacks in proportion to their shares. If
the others cannot absorb it, the promise cannot be kept: that is logged as an error naming
the setting, and the chargers keep what could be set.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)


def resize(shares: Mapping[str, float], fixed: Mapping[str, float]) -> dict[str, float] | None:
    """Total fallbacks (kW per charger) for the chargers not in `fixed`, so that together
    with the fixed ones they stay within the sum of `shares`; None when impossible."""
    excess = sum(fixed[c] - shares[c] for c in fixed)
    others = {c: kw for c, kw in shares.items() if c not in fixed}
    room = sum(others.values())
    if excess > room + 1e-9:
        return None
    if room <= 0:
        return dict(others)
    return {c: kw * (1.0 - excess / room) for c, kw in others.items()}


async def set_fallbacks(chargers: Mapping[str, Any], shares: Mapping[str, float],
                        connectors: Mapping[str, int], timeout_s: float,
                        on_set: Callable[[str], None]) -> dict[str, float]:
    """`shares`: each charger's total fallback (kW); `on_set(id)` after each success.
    Returns the chargers whose fallback was lowered, with their new total."""
    from drivers.fallback_check import FallbackRefused

    fixed: dict[str, float] = {}
    refusals: dict[str, str] = {}

    async def one(cid: str, total_kw: float) -> None:
        try:
            await chargers[cid].set_fallback(total_kw / connectors[cid], timeout_s)
            on_set(cid)
        except FallbackRefused as exc:
            if exc.configured_kw is not None:
                fixed[cid] = exc.configured_kw * connectors[cid]
            refusals[cid] = str(exc)
        except Exception as exc:
            log.warning("charger %s: fallback limit not set: %s", cid, exc)

    await asyncio.gather(*(one(cid, kw) for cid, kw in shares.items()))
    if not refusals:
        return {}
    smaller = resize(shares, fixed) if len(fixed) == len(refusals) else None
    if smaller is None:
        for cid, why in refusals.items():
            log.error("charger %s: the station limit cannot be promised if the agent stops: %s",
                      cid, why)
        return {}
    for cid, why in refusals.items():
        log.warning("charger %s: %s; the other chargers' fallbacks are lowered to make room",
                    cid, why)
    await asyncio.gather(*(one(cid, kw) for cid, kw in smaller.items()))
    return smaller


async def give_fallbacks(devices: Mapping[str, Any], controller: Any, settings: Any,
                         on_set: Callable[[str], None]) -> None:
    """Every charger's fallback per the settings' shares (at start, and after a station
    reconfiguration); shares lowered around a fixed fallback become the controller's too,
    so its own safe limits (shutdown) agree with what the chargers fall back to."""
    chargers = {cid: controller.chargers[cid] for cid in devices}
    lowered = await set_fallbacks(
        devices, {cid: settings.fallback_kw(ch) for cid, ch in chargers.items()},
        {cid: ch.connectors for cid, ch in chargers.items()},
        settings.control.comm_timeout_s, on_set)
    for cid, total_kw in lowered.items():
        n = chargers[cid].connectors
        for idx in range(1, n + 1):
            controller.fallback_per_connector[(cid, idx)] = total_kw / n
