"""Is the grid meter's sign plausible? A meter wired or configured the other way round
reports export while the station imports, and the budget would then count on capacity
that is already in use.

Everything but the EVs (the base load) draws power or nothing: grid import is at least the
chargers' measured draw minus what PV and the battery supply. A reading far below that
bound contradicts the chargers (chargers drawing 100 kW, meter showing 100 kW export): the
meter is not trusted for that cycle and the safe budget applies, as for a stale meter.
"""

from __future__ import annotations

# Sampling skew between the meter and the chargers (an EV ramping down between the two
# reads) stays well inside this: a fixed part for small stations, a share of the draw.
TOLERANCE_KW = 3.0
TOLERANCE_FRACTION = 0.15


def contradiction(grid_kw: float, ev_draw_kw: float, pv_kw: float,
                  battery_kw: float) -> str | None:
    """Why the grid reading contradicts the chargers' draw, or None when plausible.
    `battery_kw` > 0 discharges; PV and battery may make the grid legitimately negative."""
    lowest_plausible = ev_draw_kw - max(0.0, pv_kw) - max(0.0, battery_kw)
    slack = TOLERANCE_KW + TOLERANCE_FRACTION * abs(ev_draw_kw)
    if grid_kw >= lowest_plausible - slack:
        return None
    return (f"grid meter reads {grid_kw:.1f} kW while the chargers draw {ev_draw_kw:.1f} kW "
            f"(PV {pv_kw:.1f} kW, battery {battery_kw:.1f} kW): its sign looks inverted "
            "(set invert = true on the meter if so); using the safe budget")
