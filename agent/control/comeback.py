"""A charger back from its own communication-timeout fallback.

While the agent was silent to it, the charger fell back to its fallback limit; its limit
register now reads lower than what the agent last wrote. A bare heartbeat would end the
fallback and restore the old, higher limits at once, with no headroom check (seen: 151.3
kW on a 150 kW connection). So such a charger gets no heartbeat: each of its connectors
is written explicitly at the lower of its target and what it reads now (a write ends the
timeout as well), and anything more comes later out of confirmed headroom like any
increase.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from agent.control.apply import ApplyPlan, Key, Write

LIMIT_EPS_KW = 0.05  # register rounding: a readback this far below what we wrote is a fallback


def rewrite_fallback(
    plan: ApplyPlan, in_fallback: set[str], current: Mapping[Key, float | None]
) -> ApplyPlan:
    """`plan` with every connector of a charger in fallback written at most at its present
    limit (its planned increases held back), decreases first like any other."""
    if not in_fallback:
        return plan
    kept = [w for w in plan.writes if w.charger_id not in in_fallback or w.kw <= (
        current.get((w.charger_id, w.idx)) or 0.0)]  # fmt: skip
    planned = {(w.charger_id, w.idx) for w in kept}
    holds = [
        Write(key[0], key[1], cur, cur, "decrease")
        for key, cur in current.items()
        if key[0] in in_fallback and key not in planned and cur is not None
    ]
    return dataclasses.replace(plan, writes=tuple(holds + kept))
