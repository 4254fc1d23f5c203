"""What a plan adds for what it cannot see yet: one statement for the daemon and the replay.

Both build their plan requests through `Foresight.extend` (expected sessions from the
station's arrival forecast), `Foresight.reserve_kwh` (the battery reserve) and
`Foresight.with_peak_floor` (a peak floor from history, off by default), with the same
`Tuning`, so the replay measures the planner the station runs.

History: the daemon learns from its `sessions` table (`learn_from_sessions`), the replay
from the history day files it is given; a station with less than a day of it plans from
the battery reserve alone (the generic `station_prior` measured worse than the reserve on
the reference day, docs/planner.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from allocator.forecast import ArrivalForecast, SessionRecord, station_prior
from allocator.foresight import expected_sessions

if TYPE_CHECKING:
    import numpy as np
    import sqlite_utils

    from allocator.planner import ChargerSpec, PlanRequest, Scenario, SessionSpec

# Chance per hour that an unforeseen arrival needs a kWh missing from the reserve: one such
# surprise every two days (allocator.planner.RESERVE_RATE; repeated here so the control
# loop's modules need not import the LP machinery).
RESERVE_RATE = 1.0 / 48.0
# Chargers at least this strong count as fast ones for the new-station arrival prior.
FAST_CHARGER_KW = 50.0
# History the daemon's forecast learns from.
HISTORY_DAYS = 28


@dataclass(frozen=True)
class Tuning:
    """How the rolling planner hedges against EVs it cannot see yet."""

    # Without history: the battery's full discharge power for this many hours, capped to
    # its SoC window, as a reserve; None keeps the whole window (the battery full).
    reserve_hours: float | None = None
    # Chance per hour that an unforeseen arrival needs a kWh missing from the reserve
    # (allocator.planner.reserve_value); a prior.
    reserve_rate: float = RESERVE_RATE
    # Plan for the arrivals the history expects; False: only the EVs plugged in (the
    # planner before issue 16).
    expected_arrivals: bool = True
    # The reserve while planning with expected arrivals: they stand for the unseen EVs
    # the reserve was a proxy for; on the bench's days a reserve on top of them doubled
    # the worst gap (docs/planner.md).
    forecast_reserve_hours: float | None = 0.0
    # Expected sessions want their mean energy plus `risk` day-to-day standard deviations.
    risk: float = 0.0
    # Today so far against the forecast: the rest of the day's expectations are scaled by
    # (arrived + k) / (expected + k), with k this many kWh (None: off), ...
    # k = 100 measured best of 100 / 300 (docs/planner.md).
    intraday_kwh: float | None = 100.0
    # ... within 1 / intraday_max .. intraday_max: a few arrivals early in the day must not
    # rescale the whole rest of it (x2 raised one day's plan peak from 104 to 146 kW in a
    # re-plan); 1.25 measured best of 2, 1.5, 1.25, 1.1 (docs/planner.md).
    intraday_max: float = 1.25
    # Peak floor (issue 16): plan with the day's peak at least this factor x the median,
    # over the history days, of the optimal peak of that day's sessions under the first
    # plan's own series (prices, PV, base load, battery); None: off. A plan for the
    # average day sets its peak below the days with a cluster of fast chargers and spends
    # the battery at it; the floor keeps it from shaving below what the day will most
    # likely reach anyway. Off: no factor (0.6-1.2) helped on days it was not chosen on
    # (60 days measured, docs/planner.md "Peak floor from history").
    peak_floor: float | None = None
    # ... the median over the history days of the plan's own day type only (weekday /
    # weekend, as the arrival forecast's), all of them when there is none.
    peak_floor_same_day_type: bool = False
    # Scenarios (issue 16): with k >= 2, the history days are split into k groups by their
    # peak-driving load (the most short-dwell energy arriving within one hour, `_burst_kwh`),
    # each group's days learnt as a forecast of their own, and the plan is one LP with a
    # scenario per group (its expected sessions, weighted by the group's share of days),
    # all sharing the first slot's decisions (allocator.planner.Scenario). 1: the expected
    # day alone (one forecast of all days). Measured and left off (docs/planner.md
    # "Scenarios from history"): no k and no source tried helped on the held-out days.
    scenarios: int = 1
    # ... with `scenario_days`, each group is its median day's own sessions (sharp: a
    # cluster at the hour it came) instead of the group's smoothed forecast.
    scenario_days: bool = False


def reserve_energy(capacity: float, min_soc: float, max_soc: float, max_discharge: float,
                   hours: float | None) -> float:
    """kWh the battery keeps against arrivals no plan can see yet: its full discharge
    power for `hours` (None: its whole window) above its minimum SoC (fractions 0..1)."""
    usable = (max_soc - min_soc) * capacity
    held = usable if hours is None else min(usable, max_discharge * max(hours, 0.0))
    return min_soc * capacity + held


class Foresight:
    """The expectations one plan is made with: `arrivals` None plans without them."""

    def __init__(self, tuning: Tuning, arrivals: ArrivalForecast | None,
                 surprise_kwh: float | None = None) -> None:
        self.tuning = tuning
        self.arrivals = arrivals if tuning.expected_arrivals else None
        # Learnt from history: on a typical day, the most energy that arrived within an
        # hour beyond what the forecast expected for that hour (short dwells only: they
        # must be served at once). The reserve with a forecast is sized to it.
        self.surprise_kwh = surprise_kwh
        # The observed windows (start, hours, sessions), for the peak floor; and the floor
        # itself once worked out (kW), by the first plan made with this foresight.
        self.windows: list[tuple[datetime, float, Sequence[SessionRecord]]] = []
        self._floor: float | None = None
        # Fast and slow connectors (the new-station prior), and the scenarios' forecasts
        # with their weights once worked out (`scenario_forecasts`).
        self.connectors = (0, 0)
        self._groups: list[tuple[float, ArrivalForecast]] | None = None

    @classmethod
    def from_history(cls, tuning: Tuning, chargers: dict[str, tuple[float, int]],
                     windows: Sequence[tuple[datetime, float, Sequence[SessionRecord]]],
                     ) -> Foresight:
        """From observed windows (start, hours, sessions that arrived in them); with less
        than a day observed, no expected arrivals (the reserve stands in)."""
        fast = sum(n for mp, n in chargers.values() if mp >= FAST_CHARGER_KW)
        slow = sum(n for mp, n in chargers.values() if mp < FAST_CHARGER_KW)
        forecast = ArrivalForecast(prior=station_prior(fast, slow))
        hours = 0.0
        for start, h, sessions in windows:
            forecast.observe(start, h, sessions)
            hours += h
        if hours < 24.0 - 1e-9:
            return cls(tuning, None)
        made = cls(tuning, forecast, _surprise(forecast, windows))
        made.windows = list(windows)
        made.connectors = (fast, slow)
        return made

    def scenario_forecasts(self) -> list[tuple[float, ArrivalForecast]]:
        """The scenarios' forecasts and weights (`Tuning.scenarios`): the history windows
        grouped by `_burst_kwh` into at most k groups (`_split`), each group learnt as a
        forecast of its own (with its share of the new-station prior), weighted by its
        share of the windows. Empty when off or without history."""
        k = self.tuning.scenarios
        if self.arrivals is None or k < 2 or len(self.windows) < 2:
            return []
        if self._groups is None:
            burst = [_burst_kwh(start, h, sessions) for start, h, sessions in self.windows]
            groups = _split(burst, k)
            prior = station_prior(*self.connectors)
            out: list[tuple[float, ArrivalForecast]] = []
            for members in groups:
                f = ArrivalForecast(prior=prior, prior_days=len(members) / len(self.windows))
                for i in members:
                    f.observe(*self.windows[i])
                out.append((len(members) / len(self.windows), f))
            self._groups = out
        return self._groups

    @property
    def reserve_hours(self) -> float | None:
        return self.tuning.reserve_hours if self.arrivals is None \
            else self.tuning.forecast_reserve_hours

    def reserve_kwh(self, capacity: float, min_soc: float, max_soc: float,
                    max_discharge: float) -> float:
        """The battery reserve: without a forecast, `reserve_hours` of full discharge;
        with one, the typical day's surprise (`surprise_kwh`) when `forecast_reserve_hours`
        is None ('learnt'), else those hours."""
        hours = self.reserve_hours
        if self.arrivals is not None and hours is None and self.surprise_kwh is not None:
            hours = self.surprise_kwh / max(max_discharge, 1e-9)
        return reserve_energy(capacity, min_soc, max_soc, max_discharge, hours)

    def extend(self, sessions: list[SessionSpec], chargers: list[ChargerSpec],
               slot0_start: datetime, slots: int, slot_hours: float,
               first_slot_hours: float | None,
               today: tuple[datetime, Sequence[SessionRecord]] | None = None,
               ) -> tuple[list[SessionSpec], list[ChargerSpec], list[Scenario]]:
        """The plan's sessions and chargers with the expected ones added (slot 0 starts
        at `slot0_start`, a slot boundary, and lasts `first_slot_hours` from now), and its
        scenarios (`Tuning.scenarios`; then the expected sessions are in the scenarios,
        not in the sessions). `today`: since when, and the sessions that arrived since
        (intraday scaling, the same ratio for every scenario)."""
        if self.arrivals is None:
            return sessions, chargers, []
        ratio = 1.0
        k = self.tuning.intraday_kwh
        if k is not None and today is not None:
            since, arrived = today
            n = int((slot0_start - since) / timedelta(minutes=self.arrivals.slot_minutes))
            if n > 0:
                so_far = sum(a.energy_kwh for a in self.arrivals.expected(since, n))
                got = sum(r.energy_kwh for r in arrived if r.arrival < slot0_start)
                hi = self.tuning.intraday_max
                ratio = min(hi, max(1.0 / hi, (got + k) / (so_far + k)))

        def ahead(forecast: ArrivalForecast) -> tuple[list[SessionSpec], list[ChargerSpec]]:
            arrivals = forecast.expected(slot0_start, slots)
            if ratio != 1.0:
                arrivals = [replace(a, count=a.count * ratio, energy_kwh=a.energy_kwh * ratio,
                                    energy_std_kwh=a.energy_std_kwh * ratio) for a in arrivals]
            return expected_sessions(arrivals, slot_hours, first_slot_hours, self.tuning.risk)

        if self.tuning.scenario_days and self.tuning.scenarios >= 2 and len(self.windows) >= 2:
            from allocator.planner import Scenario

            return sessions, chargers, [
                Scenario(w, *self._day_sessions(win, slot0_start, slots, slot_hours,
                                                first_slot_hours, ratio))
                for w, win in self._medoids()]
        groups = self.scenario_forecasts()
        if len(groups) >= 2:
            from allocator.planner import Scenario

            return sessions, chargers, [Scenario(w, *ahead(f)) for w, f in groups]
        expected, virtual = ahead(self.arrivals)
        return sessions + expected, chargers + virtual, []

    def _medoids(self) -> list[tuple[float, tuple[datetime, float, Sequence[SessionRecord]]]]:
        """`Tuning.scenario_days`: per group of history windows (`_split` of `_burst_kwh`),
        its median member (the one nearest the group's median burst), weighted by the
        group's share of the windows."""
        windows = self.windows
        burst = [_burst_kwh(start, h, sessions) for start, h, sessions in windows]
        out = []
        for members in _split(burst, self.tuning.scenarios):
            vals = sorted(burst[i] for i in members)
            med = vals[len(vals) // 2]
            pick = min(members, key=lambda i: (abs(burst[i] - med), i))
            out.append((len(members) / len(windows), windows[pick]))
        return out

    def _day_sessions(self, window: tuple[datetime, float, Sequence[SessionRecord]],
                      slot0_start: datetime, slots: int, slot_hours: float,
                      first_slot_hours: float | None, ratio: float,
                      ) -> tuple[list[SessionSpec], list[ChargerSpec]]:
        """One history window's own sessions as a scenario of this plan: each at the same
        time of day (the next 24 h from slot 0), on the slot grid (arriving at the start of
        the slot it arrived in, never in slot 0; staying whole slots, at least one), on a
        charger of its own, its energy scaled by the intraday ratio."""
        from allocator.foresight import EXPECTED_PREFIX
        from allocator.planner import ChargerSpec, SessionSpec

        first = slot_hours if first_slot_hours is None else first_slot_hours
        horizon = first + (slots - 1) * slot_hours
        out_s: list[SessionSpec] = []
        out_c: list[ChargerSpec] = []
        for j, r in enumerate(window[2]):
            off = ((r.arrival - slot0_start).total_seconds() / 3600.0) % 24.0
            if off < first or off >= horizon or r.energy_kwh <= 0 or r.max_power_kw <= 0:
                continue
            arrival = first + math.floor((off - first) / slot_hours) * slot_hours
            dwell = (r.departure - r.arrival).total_seconds() / 3600.0
            departure = arrival + max(1, round(dwell / slot_hours)) * slot_hours
            sid = f"{EXPECTED_PREFIX}-day-{j}"
            out_c.append(ChargerSpec(sid, r.max_power_kw))
            out_s.append(SessionSpec(sid, sid, departure_h=departure,
                                     energy_needed=r.energy_kwh * ratio,
                                     max_power=r.max_power_kw, arrival_h=arrival))
        return out_s, out_c

    def with_peak_floor(self, request: PlanRequest, now: datetime) -> PlanRequest:
        """`request` with its `peak_floor` (Tuning.peak_floor; unchanged when off or
        without history). The floor is worked out once, from the first request this
        foresight serves, and kept for the rest of its day: the daemon relearns daily and
        plans at once, the replay learns at the day's start, so both work it out from a
        request made at the same instant with the same series."""
        factor = self.tuning.peak_floor
        if factor is None or factor <= 0 or self.arrivals is None or not self.windows:
            return request
        if self._floor is None:
            self._floor = factor * self._median_optimal_peak(request, now)
        return replace(request, peak_floor=self._floor)

    def _median_optimal_peak(self, request: PlanRequest, now: datetime) -> float:
        """Median over the history windows of the optimal peak (kW) of each one's
        sessions, replayed from the request's start at the same offsets from their
        window's start, under the request's series and battery: what the perfect-
        foresight plan would pay for if today brought that day's EVs. Each history
        session gets its own virtual charger (the records carry no charger), so charger
        sharing is left out; a session beyond the horizon keeps the share of its energy
        that falls inside it."""
        import numpy as np

        from allocator.planner import ChargerSpec, Planner, SessionSpec

        sh = request.slot_hours
        first = sh if request.first_slot_hours is None else request.first_slot_hours
        horizon = first + (request.slots - 1) * sh
        windows = self.windows
        if self.tuning.peak_floor_same_day_type:
            # Day types as the arrival forecast's (weekend or not), each taken at the
            # middle of its day: the plan's 24 h from now, a window's its own.
            weekend = (now + timedelta(hours=12)).weekday() >= 5
            same = [w for w in windows
                    if ((w[0] + timedelta(hours=w[1] / 2)).weekday() >= 5) == weekend]
            windows = same or windows
        battery = request.battery
        if battery is not None:
            # Hand back what it holds now, as an honest day; no reserve (the history day's
            # EVs are all known here) and no billing-day end inside it.
            battery = replace(battery, end_energy=battery.energy, end_value=None,
                              reserve_energy=0.0, reserve_value=None, day_end_h=None,
                              day_end_energy=None)
        planner = Planner()
        peaks: list[float] = []
        for start, _h, records in windows:
            sessions: list[SessionSpec] = []
            chargers: list[ChargerSpec] = []
            for i, r in enumerate(records):
                a = (r.arrival - start).total_seconds() / 3600.0
                d = (r.departure - start).total_seconds() / 3600.0
                if a >= horizon or d <= a or r.energy_kwh <= 0 or r.max_power_kw <= 0:
                    continue
                inside = (min(d, horizon) - a) / (d - a)
                cid = f"~history-{i}"
                chargers.append(ChargerSpec(cid, r.max_power_kw))
                sessions.append(SessionSpec(cid, cid, departure_h=min(d, horizon),
                                            energy_needed=r.energy_kwh * inside,
                                            max_power=r.max_power_kw, arrival_h=max(a, 0.0)))
            plan = planner.plan(replace(
                request, sessions=sessions, chargers=chargers, battery=battery,
                peak_so_far=0.0, peak_floor=0.0, imported_in_first_slot=0.0, scenarios=()))
            peaks.append(float(plan.peak))
        return float(np.median(peaks)) if peaks else 0.0


def _surprise(forecast: ArrivalForecast,
              windows: Sequence[tuple[datetime, float, Sequence[SessionRecord]]]) -> float:
    """Median over the observed days of the largest one-hour excess of short-dwell energy
    arriving over the forecast's expectation for that hour."""
    import numpy as np

    per_day: list[float] = []
    for start, h, sessions in windows:
        n = int(round(h * 4))
        expected = np.zeros(n)
        for a in forecast.expected(start, n):
            if not a.long_dwell:
                expected[a.slot] += a.energy_kwh
        actual = _short_dwell_arrivals(start, n, sessions)
        excess = np.convolve(actual - expected, np.ones(4), mode="valid")
        per_day.append(float(max(excess.max(initial=0.0), 0.0)))
    return float(np.median(per_day)) if per_day else 0.0


def _burst_kwh(start: datetime, hours: float, sessions: Sequence[SessionRecord]) -> float:
    """A window's peak-driving load: the most short-dwell energy (kWh; fast charging, to be
    served at once) that arrived within one hour (four 15-minute slots) of it."""
    import numpy as np

    arrived = _short_dwell_arrivals(start, max(1, int(round(hours * 4))), sessions)
    return float(np.convolve(arrived, np.ones(4), mode="full").max(initial=0.0))


def _short_dwell_arrivals(start: datetime, n: int,
                          sessions: Sequence[SessionRecord]) -> np.ndarray:
    """Short-dwell energy (kWh; dwell under LONG_DWELL_H) by the 15-minute slot it arrived
    in, over the n slots from `start`; sessions arriving outside them are left out."""
    import numpy as np

    from allocator.forecast import LONG_DWELL_H

    arrived = np.zeros(n)
    for s in sessions:
        k = int((s.arrival - start).total_seconds() // 900)
        dwell = (s.departure - s.arrival).total_seconds() / 3600.0
        if 0 <= k < n and dwell < LONG_DWELL_H:
            arrived[k] += s.energy_kwh
    return arrived


def _split(values: Sequence[float], k: int) -> list[list[int]]:
    """Indices of `values` in at most k groups of neighbouring values (sorted), split where
    the sum of squared deviations from each group's mean is least (exact 1-D k-means: the
    cut points are tried exhaustively, fine for the 28 days a station keeps); ascending."""
    from itertools import combinations

    order = sorted(range(len(values)), key=lambda i: (values[i], i))
    v = [values[i] for i in order]
    k = max(1, min(k, len(set(v))))

    def sse(a: int, b: int) -> float:
        part = v[a:b]
        mean = sum(part) / len(part)
        return sum((x - mean) ** 2 for x in part)

    best: tuple[float, tuple[int, ...]] | None = None
    for cuts in combinations(range(1, len(v)), k - 1):
        edges = (0, *cuts, len(v))
        cost = sum(sse(a, b) for a, b in zip(edges, edges[1:], strict=False))
        if best is None or cost < best[0] - 1e-12:
            best = (cost, edges)
    edges = best[1] if best is not None else (0, len(v))
    return [order[a:b] for a, b in zip(edges, edges[1:], strict=False)]


def session_records(db: sqlite_utils.Database, since: datetime, now: datetime,
                    chargers: dict[str, tuple[float, int]]) -> list[SessionRecord]:
    """Sessions of the `sessions` table that started since `since`, as the forecast learns
    them: their target, else what they took; open ones as if leaving now."""
    rows = db.execute(
        "SELECT charger_id, started_at, stopped_at, energy_kwh, energy_target_kwh, "
        "vehicle_max_kw FROM sessions WHERE started_at >= ? ORDER BY started_at",
        [since.astimezone(UTC).isoformat()]).fetchall()
    records: list[SessionRecord] = []
    for cid, started, stopped, took, target, vmax in rows:
        a, b = parse_time(started), parse_time(stopped)
        if a is None:
            continue
        charger_kw = chargers.get(cid, (0.0, 1))[0]
        records.append(SessionRecord(
            a, b or now, float(target if target is not None else took or 0.0),
            min(float(vmax), charger_kw) if vmax else charger_kw))
    return records


def learn_from_sessions(db: sqlite_utils.Database, now: datetime,
                        chargers: dict[str, tuple[float, int]], tuning: Tuning,
                        days: int = HISTORY_DAYS) -> Foresight:
    """The daemon's foresight: the sessions that started in the last `days` days (their
    target, else what they took), one observed window per whole day before `now` since
    the first of them."""
    records = session_records(db, now - timedelta(days=days), now, chargers)
    windows: list[tuple[datetime, float, list[SessionRecord]]] = []
    if records:
        # Whole days ending now (the same hour of day as the plan: a replay day starting at
        # noon sees the same windows as its history day files), from the first session on.
        k = math.ceil((now - records[0].arrival) / timedelta(days=1) - 1e-9)
        for j in range(k, 0, -1):
            t = now - timedelta(days=j)
            end = t + timedelta(days=1)
            windows.append((t, 24.0, [r for r in records if t <= r.arrival < end]))
    return Foresight.from_history(tuning, chargers, windows)


def parse_time(value: Any) -> datetime | None:
    """A stored timestamp (ISO-8601 text, or a datetime) as an aware datetime (naive
    means UTC); None for nothing or an unreadable value."""
    if value is None or isinstance(value, datetime):
        return value
    try:
        ts = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
