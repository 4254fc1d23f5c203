"""Local controller mode: the CSMS's own charging profiles, as the charger holds them, so the
agent's profiles (at a stack level above the CSMS's) never allow more than the CSMS's do.

Within one purpose a charger applies only the highest stack level's profile, so the agent's
profile would simply override the CSMS's. The composite the operator expects is the minimum
of both, hence the agent sends min(its limit, the CSMS's limit in force now) per connector,
and caps its max profile by the CSMS's max profile. The relay records a CSMS profile when
the charger answers Accepted, and forgets it on an accepted ClearChargingProfile or when
its transaction ends. Recurring schedules count at their lowest period (a limit too low is
safe, one too high is not).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from agent.config.ocpp import OcppChargerConfig
from agent.ocpp.profiles import limit_at
from agent.ocpp.rates import from_rate

MAX_PURPOSES = ("ChargePointMaxProfile", "ChargingStationMaxProfile")


@dataclass(frozen=True, slots=True)
class CsmsProfile:
    id: int
    connector: int
    purpose: str
    stack: int
    tx_id: str | None
    start: float  # epoch s the periods count from
    unit: str
    periods: tuple[tuple[float, float], ...]  # (start offset s, limit)
    recurring: bool

    def limit_kw(self, now: float, cfg: OcppChargerConfig,
                 phases: int | None = None) -> float | None:
        rate: float | None
        if self.recurring:
            rate = min(limit for _, limit in self.periods)
        else:
            rate = limit_at([{"startPeriod": s, "limit": v} for s, v in self.periods],
                            now - self.start)
        return None if rate is None else from_rate(rate, self.unit, cfg, phases)


def _epoch(text: object, default: float) -> float:
    if not isinstance(text, str):
        return default
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return default


def parse_set_profile(version: str, payload: dict, now: float | None = None) -> CsmsProfile | None:
    """A CSMS SetChargingProfile request (camelCase, as on the wire) -> CsmsProfile; None when
    it is not understood (the charger still gets it unchanged; it just is not merged)."""
    now = time.time() if now is None else now
    try:
        if version == "1.6":
            connector, p = int(payload["connectorId"]), payload["csChargingProfiles"]
            pid, schedule = int(p["chargingProfileId"]), p["chargingSchedule"]
        else:
            connector, p = int(payload["evseId"]), payload["chargingProfile"]
            pid, schedule = int(p["id"]), p["chargingSchedule"][0]
        periods = tuple((float(q["startPeriod"]), float(q["limit"]))
                        for q in schedule["chargingSchedulePeriod"])
        start = _epoch(schedule.get("startSchedule") or p.get("validFrom"), now)
        if p.get("chargingProfileKind") == "Relative":
            start = now
        tx = p.get("transactionId")
        return CsmsProfile(pid, connector, str(p["chargingProfilePurpose"]),
                           int(p["stackLevel"]), None if tx is None else str(tx), start,
                           str(schedule["chargingRateUnit"]), periods,
                           p.get("chargingProfileKind") == "Recurring")
    except (KeyError, TypeError, ValueError, IndexError):
        return None


class CsmsProfiles:
    """The CSMS's profiles on one charger (see the module docstring)."""

    def __init__(self) -> None:
        self.by_id: dict[int, CsmsProfile] = {}

    def add(self, p: CsmsProfile) -> None:
        # As the charger does: same id, or same purpose, stack level and connector, replaces.
        self.by_id = {k: q for k, q in self.by_id.items() if k != p.id and not (
            q.purpose == p.purpose and q.stack == p.stack and q.connector == p.connector)}
        self.by_id[p.id] = p

    def clear(self, payload: dict) -> None:
        """An accepted ClearChargingProfile (1.6 or 2.0.1 fields, camelCase)."""
        pid = payload.get("id", payload.get("chargingProfileId"))
        crit = payload.get("chargingProfileCriteria") or {}
        connector = payload.get("connectorId", crit.get("evseId"))
        purpose = payload.get("chargingProfilePurpose", crit.get("chargingProfilePurpose"))
        stack = payload.get("stackLevel", crit.get("stackLevel"))

        def hit(q: CsmsProfile) -> bool:
            if pid is not None:
                return q.id == pid
            return ((connector is None or q.connector == connector)
                    and (purpose is None or q.purpose == purpose)
                    and (stack is None or q.stack == stack))

        self.by_id = {k: q for k, q in self.by_id.items() if not hit(q)}

    def tx_ended(self, tx_id: str | int) -> None:
        self.by_id = {k: q for k, q in self.by_id.items()
                      if not (q.purpose == "TxProfile" and q.tx_id == str(tx_id))}

    def _top(self, candidates: list[CsmsProfile], now: float,
             cfg: OcppChargerConfig, phases: int | None = None) -> float | None:
        for p in sorted(candidates, key=lambda q: -q.stack):
            kw = p.limit_kw(now, cfg, phases)
            if kw is not None:
                return kw
        return None

    def connector_kw(self, idx: int, tx_id: str | int | None, cfg: OcppChargerConfig,
                     now: float | None = None, phases: int | None = None) -> float | None:
        """The CSMS's limit on connector `idx` now (its TxProfile of the running transaction,
        else its TxDefaultProfile, connector-specific before charger-wide); None: no limit.
        `phases`: the connector's count (switched to one phase, a limit in A is a third of
        the kW)."""
        now = time.time() if now is None else now
        ps = list(self.by_id.values())
        if tx_id is not None:
            tx = [p for p in ps if p.purpose == "TxProfile" and p.connector == idx
                  and p.tx_id in (None, str(tx_id))]
            kw = self._top(tx, now, cfg, phases)
            if kw is not None:
                return kw
        for conn in (idx, 0):
            kw = self._top([p for p in ps if p.purpose == "TxDefaultProfile"
                            and p.connector == conn], now, cfg, phases)
            if kw is not None:
                return kw
        return None

    def max_kw(self, cfg: OcppChargerConfig, now: float | None = None) -> float | None:
        now = time.time() if now is None else now
        return self._top([p for p in self.by_id.values() if p.purpose in MAX_PURPOSES],
                         now, cfg)
