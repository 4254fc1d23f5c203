"""Which sessions the horizon plan holds this cycle, and why (for `sems status`).

The plan's reasons are worked out once per plan (`allocator.held`, carried by the slot's
`Guidance.held`); each cycle only checks, per session, that it is the plan that binds it
now and not something else (its vehicle, its measured draw, a charger, a fuse):
- the allocator's binding is `cap` and the plan's cap is the tighter one, or `minimum`
  because the plan's cap is below the charger's minimum power;
- or the binding is `station` (or `minimum`: too little left for its minimum) while the
  plan's import cap lowered the station's budget below the grid's: the plan keeps the
  import at its peak (a session the plan does not know yet, arrived since, gets this
  reason too).
A few comparisons per session: cheap enough for every cycle.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from agent.control.decision import SessionRow
from allocator.guidance import Guidance, Hold

_EPS_KW = 1e-6


def held_by_plan(
    guidance: Guidance | None,
    rows: Sequence[SessionRow],
    allocations: Mapping[str, float],
    binding: Mapping[str, str],
    *,
    plan_lowered_grid: bool,
    guarded: Collection[str] = (),
) -> dict[str, Hold]:
    """Session id -> why the plan holds it, for the sessions it binds this cycle."""
    if guidance is None:
        return {}
    out: dict[str, Hold] = {}
    for r in rows:
        sid = r.session_id
        if sid in guarded:  # the V2G departure guard lifted the plan's pause
            continue
        hold = guidance.held.get(sid)
        planned = guidance.session_cap(sid)
        b = binding.get(sid)
        if hold is not None and planned is not None and r.power_cap_kw is not None \
                and r.power_cap_kw >= planned - _EPS_KW \
                and (b == "cap" or (b == "minimum" and planned < r.min_power_kw)):
            out[sid] = hold
        elif b in ("station", "minimum") and plan_lowered_grid:
            if hold is not None and hold.reason == "peak":
                out[sid] = hold
            else:
                out[sid] = Hold(
                    reason="peak", planned_kw=allocations.get(sid, 0.0),
                    max_kw=r.vehicle_max_kw,
                    until=hold.until if hold is not None else None,
                    departure=hold.departure if hold is not None else None,
                    due_kwh=hold.due_kwh if hold is not None else None,
                    open_ended=hold.open_ended if hold is not None else False,
                    peak_kw=guidance.peak_kw, demand_charge=guidance.demand_charge,
                )  # fmt: skip
    return out
