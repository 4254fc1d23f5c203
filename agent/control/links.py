"""A device's link state, the one rule the local API, the uplink and /metrics share.

offline: the driver reports it offline; stale: online but no good read for longer than
`stale_after_s` (at least 2 s, so a slow RTU poll is not called stale); otherwise online.
"""

from __future__ import annotations

from typing import Literal

from drivers.health import Health

Link = Literal["online", "stale", "offline"]
MIN_STALE_S = 2.0


def link_state(h: Health, stale_after_s: float, now: float) -> Link:
    """`now`: Unix seconds (health times are wall-clock)."""
    if not h.online:
        return "offline"
    if h.last_ok_ts is None or now - h.last_ok_ts > max(stale_after_s, MIN_STALE_S):
        return "stale"
    return "online"
