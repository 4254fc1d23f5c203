"""The sessions a rolling plan cannot see yet, as sessions it can plan for.

A plan that knows only the EVs plugged in now spends the battery on the first hour's
peak and price spread, and the fleet or the fast-charging rush that comes later finds it
empty (issue 16: +5 to +21 % over the perfect-foresight optimum on unseen days). So every
plan also carries the arrivals the station's history expects (`ArrivalForecast`), one
*expected session* per slot and dwell class: it arrives at the slot's start, wants the
slot's expected energy plus a risk margin (`risk` standard deviations of the day-to-day
spread), may draw the expected arrivals' power, and leaves after their mean dwell. It has
its own virtual charger, so it never competes for a real connector. The plan then keeps
the battery for the coming peak and sets the day's demand charge by the day's load.

Expected value with a margin, not scenarios: one LP per plan keeps the solve at
milliseconds; docs/planner.md has the measurements behind `risk`. Pure: imports neither
`agent` nor `drivers`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the planner (highspy) is imported only where plans are made
    from allocator.forecast import ExpectedArrivals
    from allocator.planner import ChargerSpec, SessionSpec

# Session and charger ids of expected sessions start with this; no real id does (the
# planner's callers drop them from what they apply).
EXPECTED_PREFIX = "~expected"


def is_expected(session_id: str) -> bool:
    return session_id.startswith(EXPECTED_PREFIX)


def expected_sessions(arrivals: Sequence[ExpectedArrivals], slot_hours: float,
                      first_slot_hours: float | None = None, risk: float = 0.0,
                      ) -> tuple[list[SessionSpec], list[ChargerSpec]]:
    """Expected sessions and their virtual chargers for a plan whose slot 0 starts now
    (and lasts `first_slot_hours` when the plan starts mid-slot). Slot 0's arrivals are
    left out: the plan is re-made at every real arrival, and the rest of that slot is
    too short to matter for a peak the next plan can still see."""
    from allocator.planner import ChargerSpec, SessionSpec

    first = slot_hours if first_slot_hours is None else first_slot_hours
    sessions: list[SessionSpec] = []
    chargers: list[ChargerSpec] = []
    for a in arrivals:
        if a.slot < 1:
            continue
        arrival = first + (a.slot - 1) * slot_hours
        # Departures on the slot grid: a departure inside a slot would split it into
        # sub-intervals for an average that is only an estimate anyway.
        departure = arrival + max(1, math.ceil(a.dwell_h / slot_hours - 0.5)) * slot_hours
        energy = max(0.0, a.energy_kwh + risk * a.energy_std_kwh)
        # The expected arrivals' power, but never too little to deliver the energy in the
        # dwell (the margin may ask for more energy than the mean count could take).
        power = max(a.count * a.max_power_kw, energy / (0.95 * (departure - arrival)))
        if energy <= 0 or power <= 0:
            continue
        sid = f"{EXPECTED_PREFIX}-{a.slot}-{'long' if a.long_dwell else 'short'}"
        chargers.append(ChargerSpec(sid, power))
        sessions.append(SessionSpec(session_id=sid, charger_id=sid, arrival_h=arrival,
                                    departure_h=departure, energy_needed=energy,
                                    max_power=power))
    return sessions, chargers
