"""What the horizon plan asks of the current control cycle, in the allocator's terms.

The one statement of docs/planner.md's mapping: the control loop applies it to its
pre-allocated arrays, `allocator.planner.apply_plan` to a request dict (the replay).
- a planned session target becomes its `powerCap` (0 pauses it; V2G targets < 0 give 0,
  the discharge itself being commanded separately) and priority 1 when it is > 0;
- the slot's import cap lowers the allocator's grid capacity; with the meter's import so
  far in the running 15-minute interval, the cap is what keeps that interval's average at
  the planned peak (an EV arriving mid-slot may draw above the slot average meanwhile);
- the battery setpoint narrows the battery to the planned direction and size.
The allocator stays the safety authority: guidance only ever narrows what it may hand out.
Each slot's guidance may also carry, per session the plan holds below what it could draw,
why (`Hold`, explained once per plan by `allocator.held`), for `sems status`.
Pure like the planner, and without its solver import (highspy), so the control loop can
hold guidance without loading the LP machinery.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

# Why the plan holds a session below what it could draw (docs/planner.md, "Why a session
# is held"): a cheaper slot later, the demand charge's peak, its target already planned in
# full, a V2G discharge, the grid's capacity or cap or its charger shared by the plan, or
# none of these the plan can name ("plan").
HoldReason = Literal["price", "peak", "schedule", "v2g", "grid", "charger", "plan"]


@dataclass(frozen=True, slots=True)
class Hold:
    """Why the plan holds one session in one sub-interval, with the figures that say it.
    Prices are EUR/kWh (import, carbon included); powers kW; energies kWh into the EV."""

    reason: HoldReason
    planned_kw: float  # the plan's power for it now (< 0: giving back, V2G)
    max_kw: float  # what it could draw: min(vehicle, charger)
    until: datetime | None = None  # the plan gives it more from then (V2G: stops giving);
    #                                None: not before it leaves or the horizon ends
    # As the plan knows it (None: a session that arrived after the plan was made):
    departure: datetime | None = None
    due_kwh: float | None = None  # still due by departure after what the plan gives before
    open_ended: bool = False  # no known target: `due_kwh` is the planner's default only
    price_now: float | None = None
    price_then: float | None = None  # the price when it gets more (price)
    worth: float | None = None  # what a kWh is worth to an EV without a target (price)
    peak_kw: float | None = None  # the plan's peak (peak)
    demand_charge: float = 0.0  # EUR/kW on the peak (peak: > 0; 0: the plan's own cap)
    limit_kw: float | None = None  # the grid's capacity or cap (grid), the charger's (charger)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able, times as ISO-8601 UTC (the local API's `held` field)."""
        return {
            "reason": self.reason,
            "until": self.until.isoformat() if self.until is not None else None,
            "planned_kw": round(self.planned_kw, 3),
            "max_kw": round(self.max_kw, 3),
            "departure": self.departure.isoformat() if self.departure is not None else None,
            "due_kwh": _round(self.due_kwh, 3),
            "open_ended": self.open_ended,
            "price_now_eur_kwh": _round(self.price_now, 4),
            "price_then_eur_kwh": _round(self.price_then, 4),
            "worth_eur_kwh": _round(self.worth, 4),
            "peak_kw": _round(self.peak_kw, 3),
            "demand_charge_eur_kw": round(self.demand_charge, 4),
            "limit_kw": _round(self.limit_kw, 3),
        }


def _round(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


class Plan(Protocol):
    """What guidance reads of a plan (allocator.planner.Plan). A protocol, not an import:
    the planner imports this module, and its solver (highspy) loads only where plans are
    made."""

    import_cap: Any  # numpy arrays, one value per step
    battery_power: Any
    session_power: dict[str, Any]
    session_present: dict[str, Any]
    peak_cap: Any
    peak: float
    billing_hours: float

    def mean_over(self, values: Any, hours: float, window_h: float,
                  mask: Any = None) -> float: ...

    def slot_at(self, hours: float) -> int: ...


@dataclass(frozen=True, slots=True)
class Guidance:
    import_cap_kw: float  # the slot's planned import cap (kW)
    peak_kw: float  # the plan's peak (kW, 15-minute average)
    peak_cap_kw: float  # capacity / demand-response cap of the slot: never above it
    billing_h: float  # the demand charge's averaging interval
    battery_kw: float  # planned setpoint, > 0 discharges
    session_kw: Mapping[str, float] = field(default_factory=dict)  # planned target (kW, < 0 V2G)
    # Planned charging (kW >= 0) where it differs from max(0, session_kw): over a window in
    # which a target changes sign, the average of its charging part.
    charge_kw: Mapping[str, float] = field(default_factory=dict)
    # Sessions the plan holds below what they could draw in this slot, and why.
    held: Mapping[str, Hold] = field(default_factory=dict)
    demand_charge: float = 0.0  # EUR/kW on the peak the import cap keeps (0: none)

    def grid_cap(
        self, interval_import_kwh: float | None, interval_remaining_h: float | None
    ) -> float:
        """Import the allocator may use now (apply_plan's rule, same arguments)."""
        cap = self.import_cap_kw
        if (
            interval_import_kwh is not None
            and interval_remaining_h is not None
            and interval_remaining_h > 1e-9
        ):
            budget = self.peak_kw * self.billing_h - interval_import_kwh
            cap = max(cap, min(self.peak_cap_kw, budget / interval_remaining_h))
        return cap

    def session_cap(self, session_id: str) -> float | None:
        """Planned power cap of a session (>= 0), or None when the plan does not know it."""
        if session_id in self.charge_kw:
            return self.charge_kw[session_id]
        target = self.session_kw.get(session_id)
        return None if target is None else max(0.0, target)

    def battery_limits(self, max_charge_kw: float, max_discharge_kw: float) -> tuple[float, float]:
        """(max charge, max discharge) narrowed to the planned direction."""
        if self.battery_kw >= 0:
            return 0.0, max(0.0, min(max_discharge_kw, self.battery_kw))
        return max(0.0, min(max_charge_kw, -self.battery_kw)), 0.0


def guidance_at(plan: Plan, hours: float, window_h: float = 0.0) -> Guidance:
    """The plan's slot containing `hours` (from the plan's start), as guidance; with
    `window_h` > 0 (a control step that long), each value is the plan's time average over
    [hours, hours + window_h] instead (Plan.mean_over)."""
    t = plan.slot_at(hours)
    peak_cap = float(plan.peak_cap[t]) if len(plan.peak_cap) else float(plan.import_cap[t])
    if window_h <= 0:
        return Guidance(
            import_cap_kw=float(plan.import_cap[t]), peak_kw=float(plan.peak),
            peak_cap_kw=peak_cap, billing_h=float(plan.billing_hours),
            battery_kw=float(plan.battery_power[t]),
            session_kw={sid: float(p[t]) for sid, p in plan.session_power.items()},
        )
    present = plan.session_present
    return Guidance(
        import_cap_kw=plan.mean_over(plan.import_cap, hours, window_h),
        peak_kw=float(plan.peak), peak_cap_kw=peak_cap, billing_h=float(plan.billing_hours),
        battery_kw=plan.mean_over(plan.battery_power, hours, window_h),
        session_kw={sid: plan.mean_over(p, hours, window_h, present.get(sid))
                    for sid, p in plan.session_power.items()},
        charge_kw={sid: max(0.0, plan.mean_over(p.clip(min=0.0), hours, window_h, present.get(sid)))
                   for sid, p in plan.session_power.items()},
    )
