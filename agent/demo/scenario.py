"""The demo's scenario: which file, and where in its day the demo starts.

A scenario day runs 24 hours; at 60x that is 24 minutes, and the reference day's first EV
arrives 90 minutes in. So the demo starts the day at the 15-minute slot that brings the
most EV arrivals within the demo's span (after a short lead that covers the agent's
start-up), by rotating the day: the series and every EV move together, nothing is dropped
or invented, and what came before the window follows at the end of the day.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

SLOT_S = 900.0  # the scenario format's slot length (15 minutes)


class ScenarioError(ValueError):
    """A scenario the demo cannot use; the message is one line naming the file and field."""


def default_scenario() -> Path:
    """The reference day shipped with the simulator (hardware-sim/scenarios/): a busy
    station day with PV, a battery and a binding grid connection."""
    import hardware_sim

    return Path(hardware_sim.__file__).resolve().parent / "scenarios" / "reference-day.json"


def load_scenario(path: Path) -> dict[str, Any]:
    """Read and validate with the simulator's own parser (so the demo refuses exactly what
    `sems-sim` would), as `--scenario: ...` errors."""
    from hardware_sim import StationError, parse_station

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"--scenario: {path}: cannot read ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"--scenario: {path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"--scenario: {path}: must hold a JSON object")
    try:
        parse_station(data)
    except StationError as exc:
        raise ScenarioError(f"--scenario: {path}: {exc}") from None
    return data


def is_day(data: dict[str, Any]) -> bool:
    """A scenario day (station + series + evs), as opposed to a bare station."""
    return isinstance(data.get("station"), dict) and bool(data.get("series"))


def station_of(data: dict[str, Any]) -> dict[str, Any]:
    return data["station"] if isinstance(data.get("station"), dict) else data


def _time(text: str) -> datetime:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Window:
    offset_s: float  # where the demo's t = 0 falls in the day (a slot boundary)
    arrivals: int  # EVs arriving within [lead, lead + span) of it


def busy_window(data: dict[str, Any], span_s: float, lead_s: float) -> Window:
    """The slot start with the most EV arrivals in [start + lead, start + lead + span),
    counting around the day's end (the simulator replays a day past its end); the
    earliest such slot wins a tie."""
    series = data["series"]
    day_s = len(series) * SLOT_S
    start = _time(series[0]["start"])
    arrivals = [(_time(ev["arrival"]) - start).total_seconds() % day_s
                for ev in data.get("evs") or []]
    span_s = min(span_s, day_s - lead_s)
    best = Window(0.0, -1)
    for k in range(len(series)):
        offset = k * SLOT_S
        n = sum(1 for a in arrivals if lead_s <= (a - offset) % day_s < lead_s + span_s)
        if n > best.arrivals:
            best = Window(offset, n)
    return best


def rotate_day(data: dict[str, Any], offset_s: float) -> dict[str, Any]:
    """The same day starting `offset_s` later (a multiple of the slot): series slots and EV
    arrivals keep their times of day; those before the new start move to the day's end."""
    if offset_s % SLOT_S:
        raise ValueError("offset_s: must be a whole number of slots")
    series = data["series"]
    n = len(series)
    day_s = n * SLOT_S
    k = int(offset_s // SLOT_S) % n
    old_start = _time(series[0]["start"])
    new_start = old_start + timedelta(seconds=offset_s)
    slots = [dict(slot, start=_iso(new_start + timedelta(seconds=i * SLOT_S)))
             for i, slot in enumerate(series[k:] + series[:k])]
    evs = []
    for ev in data.get("evs") or []:
        arrival, departure = _time(ev["arrival"]), _time(ev["departure"])
        rel = ((arrival - old_start).total_seconds() - offset_s) % day_s
        moved = new_start + timedelta(seconds=rel)
        evs.append(dict(ev, arrival=_iso(moved), departure=_iso(moved + (departure - arrival))))
    evs.sort(key=lambda ev: ev["arrival"])
    return dict(data, series=slots, evs=evs)
