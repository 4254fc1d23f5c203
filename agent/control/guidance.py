"""What the horizon plan asks of the current control cycle, in the allocator's terms.

The mapping is docs/planner.md's (`allocator.planner.apply_plan`), done on values instead of
a request dict so the control loop can fill its pre-allocated arrays directly:
- a planned session target becomes its `powerCap` (0 pauses it; V2G targets < 0 give 0,
  the discharge itself being commanded separately) and priority 1 when it is > 0;
- the slot's import cap lowers the allocator's grid capacity; with the meter's import so
  far in the running 15-minute interval, the cap is what keeps that interval's average at
  the planned peak (an EV arriving mid-slot may draw above the slot average meanwhile);
- the battery setpoint narrows the battery to the planned direction and size.
The allocator stays the safety authority: guidance only ever narrows what it may hand out.
tests/agent/test_planning.py checks this against `apply_plan` on the same plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the planner (highspy) is imported only where plans are made
    from allocator.planner import Plan


@dataclass(frozen=True, slots=True)
class Guidance:
    import_cap_kw: float  # the slot's planned import cap (kW)
    peak_kw: float  # the plan's peak (kW, 15-minute average)
    peak_cap_kw: float  # capacity / demand-response cap of the slot: never above it
    billing_h: float  # the demand charge's averaging interval
    battery_kw: float  # planned setpoint, > 0 discharges
    session_kw: Mapping[str, float] = field(default_factory=dict)  # planned target (kW)

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
        target = self.session_kw.get(session_id)
        return None if target is None else max(0.0, target)

    def battery_limits(self, max_charge_kw: float, max_discharge_kw: float) -> tuple[float, float]:
        """(max charge, max discharge) narrowed to the planned direction."""
        if self.battery_kw >= 0:
            return 0.0, max(0.0, min(max_discharge_kw, self.battery_kw))
        return max(0.0, min(max_charge_kw, -self.battery_kw)), 0.0


def guidance_at(plan: Plan, hours: float) -> Guidance:
    """The plan's slot containing `hours` (from the plan's start), as guidance."""
    t = plan.slot_at(hours)
    return Guidance(
        import_cap_kw=float(plan.import_cap[t]),
        peak_kw=float(plan.peak),
        peak_cap_kw=float(plan.peak_cap[t]) if len(plan.peak_cap) else float(plan.import_cap[t]),
        billing_h=float(plan.billing_hours),
        battery_kw=float(plan.battery_power[t]),
        session_kw={sid: float(p[t]) for sid, p in plan.session_power.items()},
    )
