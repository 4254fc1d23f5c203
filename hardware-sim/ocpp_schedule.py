"""Charging profiles as an OCPP charge point applies them (1.6 section 3.13 / 2.0.1 K):
per connector the highest-stack TxProfile of its transaction, else the highest-stack
TxDefaultProfile (connector-specific before station-wide), all capped by the highest-stack
max profile (ChargePointMaxProfile / ChargingStationMaxProfile) on the whole charger.

Profiles are kept in a version-neutral form (`StoredProfile`); limits are in kW here, A
converted with the period's phases (default 3) at `voltage`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

MAX_PURPOSES = ("ChargePointMaxProfile", "ChargingStationMaxProfile")


@dataclass(frozen=True)
class StoredProfile:
    id: int
    connector: int  # 0: the whole charger
    purpose: str  # TxProfile | TxDefaultProfile | max
    stack: int
    kind: str  # Absolute | Relative | Recurring
    transaction: str | None
    start: float | None  # Unix time of startSchedule (Absolute), None otherwise
    duration: float | None
    unit: str  # A | W
    periods: tuple[tuple[float, float, int | None], ...]  # (startPeriod s, limit, phases)
    received: float  # Unix time it was set

    @property
    def is_max(self) -> bool:
        return self.purpose in MAX_PURPOSES


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def from_payload(connector: int, p: dict, received: float) -> StoredProfile:
    """A profile as the library hands it to a handler (snake_case keys, 1.6 or 2.0.1)."""
    sched = p["charging_schedule"]
    if isinstance(sched, list):  # 2.0.1: a list of schedules; the first one counts here
        sched = sched[0]
    periods = tuple((float(x["start_period"]), float(x["limit"]), x.get("number_phases"))
                    for x in sched["charging_schedule_period"])
    start = sched.get("start_schedule")
    tx = p.get("transaction_id")
    return StoredProfile(
        id=int(p.get("charging_profile_id", p.get("id", 0))), connector=connector,
        purpose=p["charging_profile_purpose"], stack=int(p["stack_level"]),
        kind=p["charging_profile_kind"], transaction=None if tx is None else str(tx),
        start=parse_time(start) if start else None, duration=sched.get("duration"),
        unit=sched["charging_rate_unit"], periods=periods, received=received)


class ProfileStore:
    def __init__(self, rating_kw: float, voltage: float = 230.0) -> None:
        self.rating_kw = rating_kw
        self.voltage = voltage
        self.profiles: list[StoredProfile] = []

    def set(self, p: StoredProfile) -> None:
        # Same id, or same purpose, stack and connector, replaces (1.6 3.13.2).
        self.profiles = [q for q in self.profiles if q.id != p.id and not (
            q.purpose == p.purpose and q.stack == p.stack and q.connector == p.connector)]
        self.profiles.append(p)

    def drop_transaction_profiles(self, tx: str | None = None) -> None:
        self.profiles = [q for q in self.profiles if q.purpose != "TxProfile"
                         or (tx is not None and q.transaction != tx)]

    def _kw(self, p: StoredProfile, limit: float, phases: int | None) -> float:
        if p.unit == "W":
            return limit / 1000.0
        return limit * (phases or 3) * self.voltage / 1000.0

    def limit_of(self, p: StoredProfile, now: float, tx_start: float | None) -> float | None:
        """The profile's limit in kW at `now`, or None when it is not in force."""
        if p.kind == "Absolute" and p.start is not None:
            origin = p.start
        elif p.kind == "Relative":
            origin = tx_start if tx_start is not None else p.received
        else:  # Recurring, or Absolute without a start: from when it was received
            origin = p.start if p.start is not None else p.received
        elapsed = now - origin
        if elapsed < 0 or (p.duration is not None and elapsed > p.duration):
            return None
        value = None
        for start, limit, phases in sorted(p.periods):
            if start <= elapsed:
                value = self._kw(p, limit, phases)
        return value

    def _best(self, candidates: list[StoredProfile], now: float,
              tx_start: float | None) -> float | None:
        for p in sorted(candidates, key=lambda q: -q.stack):
            value = self.limit_of(p, now, tx_start)
            if value is not None:
                return value
        return None

    def max_kw(self, now: float) -> float:
        found = self._best([p for p in self.profiles if p.is_max], now, None)
        return self.rating_kw if found is None else min(found, self.rating_kw)

    def connector_kw(self, idx: int, tx: str | None, tx_start: float | None,
                     now: float) -> float:
        """The connector's own limit (before the charger-wide max)."""
        if tx is not None:
            found = self._best([p for p in self.profiles if p.purpose == "TxProfile"
                                and p.transaction == tx], now, tx_start)
            if found is not None:
                return min(found, self.rating_kw)
        for conn in (idx, 0):
            found = self._best([p for p in self.profiles if p.purpose == "TxDefaultProfile"
                                and p.connector == conn], now, tx_start)
            if found is not None:
                return min(found, self.rating_kw)
        return self.rating_kw

    def change_points(self, now: float, horizon: float) -> list[float]:
        """Offsets from `now` (within horizon) at which some profile's limit may change."""
        points = {0.0}
        for p in self.profiles:
            origin = p.start if p.start is not None else p.received
            for start, _, _ in p.periods:
                points.add(origin + start - now)
            if p.duration is not None:
                points.add(origin + p.duration - now + 1e-3)
        return sorted(x for x in points if 0.0 <= x < horizon)
