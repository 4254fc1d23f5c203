"""Why a plan holds a session below what it could draw: one `Hold` per held session and
sub-interval, worked out once per plan (never per control cycle) for `sems status`.

The LP does not say why a column sits below its bound, so the reason is read off the
plan's own figures, in this order (the first that holds names it):
- v2g: the plan has it give power back;
- grid: the station's planned import is at the grid's capacity or a demand-response cap
  (the plan shares what there is);
- charger: its charger is planned at its rated power (shared with its other connector);
- price: the plan gives it more later at a lower price (import + carbon), or, for an EV
  without a known target, power now costs more than its charge is worth to the plan;
- peak: the billing slot's planned import is at the plan's peak and there is a demand
  charge (more now would raise the peak);
- schedule: its target is planned in full with what it gets now (nothing more is due
  before it leaves);
- plan: none of these (e.g. the battery's reserve or its day-end charge).

Pure like the planner.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from allocator.foresight import is_expected
from allocator.guidance import Hold, HoldReason
from allocator.planner import Plan, PlanRequest

TOL_KW = 0.05  # below this a planned power is not "held" (LP noise, rounding)
PRICE_EPS = 1e-4  # EUR/kWh: a later slot this much cheaper is a reason to wait


def explain(req: PlanRequest, plan: Plan, start: datetime) -> list[dict[str, Hold]]:
    """Per sub-interval of `plan`, the sessions it holds and why. `start` is the wall time
    of the plan's hour 0; expected sessions (never on a real connector) are left out."""
    n = len(plan.slot_hours)
    starts, dt = plan.slot_starts_h, plan.slot_hours
    slot_of = plan.slot_index if len(plan.slot_index) == n else np.arange(n)
    ci = np.zeros(req.slots) if req.carbon_intensity is None \
        else np.asarray(req.carbon_intensity, dtype=np.float64)
    price = (np.asarray(req.import_price, dtype=np.float64)
             + req.carbon_price * ci * 1e-6)[slot_of]
    # The demand charge is on each billing slot's average import, the running slot's
    # import before the plan included.
    energy = plan.slot_energy()
    if len(energy):
        energy[0] += req.imported_in_first_slot
    slot_avg = energy[slot_of] / req.slot_hours
    at_peak = slot_avg >= plan.peak - max(TOL_KW, 1e-3 * plan.peak)
    peak_cap = plan.peak_cap if len(plan.peak_cap) == n else np.full(n, np.inf)
    at_cap = plan.grid_power >= peak_cap - TOL_KW
    chargers = {c.id: c.max_power for c in req.chargers}
    load: dict[str, np.ndarray] = {}
    for s in req.sessions:
        if s.session_id in plan.session_power:
            load.setdefault(s.charger_id, np.zeros(n))
            load[s.charger_id] += np.abs(plan.session_power[s.session_id])
    later = np.triu(np.ones((n, n), dtype=bool), k=1)  # later[t, u]: u after t
    out: list[dict[str, Hold]] = [{} for _ in range(n)]

    def at(hours: float) -> datetime:
        # To the second: hours are floats, and slot edges must read as 01:00:00, not
        # 01:00:00.000002.
        return start + timedelta(seconds=round(float(hours) * 3600.0 + start.microsecond / 1e6)
                                 ) - timedelta(microseconds=start.microsecond)

    for s in req.sessions:
        sid = s.session_id
        p = plan.session_power.get(sid)
        if p is None or is_expected(sid):
            continue
        present = plan.session_present.get(sid, np.ones(n, dtype=bool))
        pmax = min(s.max_power, chargers[s.charger_id])
        held = np.flatnonzero(present & (p < pmax - TOL_KW))
        if not len(held):
            continue
        # Energy into the EV the plan gives it before each sub-interval (V2G takes out).
        gives = (req.charging_efficiency * np.clip(p, 0, None)
                 - np.clip(-p, 0, None) / req.v2g_efficiency) * dt
        before = np.concatenate(([0.0], np.cumsum(gives)[:-1]))
        due = np.clip(s.energy_needed - before, 0.0, None)
        rest = due - gives  # still due once this sub-interval's share is in
        # The first later sub-interval in which the plan gives it more (resumes); for V2G,
        # the first in which it stops giving.
        more = later[held] & present[None, :] & (p[None, :] > p[held, None] + TOL_KW)
        resume = np.where(more.any(axis=1), more.argmax(axis=1), -1)
        stops = later[held] & (p[None, :] > -TOL_KW)
        stop = np.where(stops.any(axis=1), stops.argmax(axis=1), -1)
        open_ended = s.extra_energy > 0
        worth = s.extra_value if open_ended and s.extra_value > 0 else None
        departure = at(s.departure_h)
        for k, t in enumerate(held):
            u = int(resume[k])
            reason: HoldReason
            price_then = None
            if p[t] < -TOL_KW:
                reason = "v2g"
                u = int(stop[k])
            elif at_cap[t]:
                reason = "grid"
            elif load[s.charger_id][t] >= chargers[s.charger_id] - TOL_KW:
                reason = "charger"
            elif u >= 0 and price[u] < price[t] - PRICE_EPS:
                reason, price_then = "price", float(price[u])
            elif worth is not None and price[t] > worth - PRICE_EPS:
                reason = "price"
            elif at_peak[t] and req.demand_charge > 0:
                reason = "peak"
            elif rest[t] <= TOL_KW and not open_ended:
                reason = "schedule"
            else:
                reason = "plan"
            out[t][sid] = Hold(
                reason=reason,
                planned_kw=float(p[t]),
                max_kw=float(pmax),
                until=at(starts[u]) if u >= 0 else None,
                departure=departure,
                due_kwh=float(due[t]),
                open_ended=open_ended,
                price_now=float(price[t]),
                price_then=price_then,
                worth=worth,
                peak_kw=float(plan.peak),
                demand_charge=float(req.demand_charge),
                limit_kw=(float(peak_cap[t]) if reason == "grid" else
                          float(chargers[s.charger_id]) if reason == "charger" else None),
            )
    return out
