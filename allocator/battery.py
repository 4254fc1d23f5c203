"""Rule 5 with a planned setpoint: the battery follows the plan on top of what rule 5 gives.

Shared by the reference and the kernel's caller (StationArrays.solve), after rule 5, so both
compute the same float operations in the same order and the kernel itself is unchanged.
Without a setpoint nothing here runs: old requests keep their results.
"""

from __future__ import annotations


def follow_setpoint(rule5_kw: float, setpoint_kw: float, *, net_kw: float, grid_capacity: float,
                    max_discharge: float, max_charge: float, soc: float, min_soc: float) -> float:
    """The battery power (kW, > 0 discharging) with the plan's setpoint (> 0 discharge,
    < 0 charge). `rule5_kw`: what rule 5 gave; `net_kw`: baseLoad + EVs - pvPower.

    - discharge: at least the setpoint, up to maxDischargePower and the net load (never
      exporting), only above minSoc;
    - charge from the grid: up to -setpoint and maxChargePower, within the room left under
      gridCapacity after the EVs (they were allocated first), not at soc 100, and not while
      rule 5 discharges (the load is already above gridCapacity).
    """
    discharge = max(rule5_kw, 0.0)
    charge = max(-rule5_kw, 0.0)
    if setpoint_kw > 0 and soc > min_soc:
        discharge = max(discharge, min(setpoint_kw, max_discharge, max(0.0, net_kw)))
    elif setpoint_kw < 0 and soc < 100 and discharge == 0.0:
        charge = max(charge, min(-setpoint_kw, max_charge, grid_capacity - net_kw))
    return discharge - charge
