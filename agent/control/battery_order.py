"""The battery's setpoint obeys the write order the chargers' limits obey.

Less discharge (or more charging) raises the grid import as surely as a higher charger
limit, and a battery follows its setpoint faster (100 kW/s) than the EVs follow a lowered
limit (a delay, then a ramp). Setting the battery idle in the same cycle as the EVs are
lowered therefore overshoots, the more so after a restart or a stale BMS. So a step down
in discharge is granted only out of the headroom the meter confirms this cycle, before the
EVs' increases (which share what is left); more discharge is always allowed (it lowers
the import).
"""

from __future__ import annotations


def ordered_setpoint(wanted: float | None, present: float | None, headroom_kw: float) -> float | None:
    """`wanted`: the controller's setpoint (None: nothing to write); `present`: what the
    battery gives now (measured, else the setpoint in force; None: unknown); `headroom_kw`:
    what the meter confirms free this cycle (apply.py)."""
    if wanted is None or present is None or wanted >= present:
        return wanted
    return round(max(wanted, present - max(0.0, headroom_kw)), 3)
