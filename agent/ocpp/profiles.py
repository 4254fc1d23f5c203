"""The charging profiles the agent sends, as OCPP payloads (camelCase, ready to send).

Profile ids are fixed per purpose and connector, so a new profile replaces the agent's
previous one of the same purpose instead of piling up in the charger's memory:

- limit of a connector in a transaction: TxProfile bound to the transaction, id 2000 + n;
- limit of a connector without a transaction: TxDefaultProfile on that connector, id
  1000 + n (a transaction that starts there runs at it until its TxProfile arrives);
- the charger-wide max profile, id 100: the charger's rating for the next `hold_s`
  seconds, then the fallback. The agent renews it well before `hold_s` runs out, so while
  the agent lives the max profile never binds; if the agent dies or the link drops, the
  charger falls to its fallback by itself (composite = min(Tx/TxDefault, max)), with no
  support for anything beyond core smart charging needed.
"""

from __future__ import annotations

from datetime import datetime

MAX_PROFILE_ID = 100
DEFAULT_PROFILE_BASE = 1000
TX_PROFILE_BASE = 2000


def iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds").replace("+00:00", "Z")


def _periods(*steps: tuple[int, float], number_phases: int | None,
             phase_to_use: int | None = None) -> list[dict]:
    out = []
    for start, limit in steps:
        p: dict = {"startPeriod": start, "limit": limit}
        if number_phases is not None:
            p["numberPhases"] = number_phases
        if phase_to_use is not None:
            p["phaseToUse"] = phase_to_use
        out.append(p)
    return out


def connector_profile(version: str, idx: int, limit: float, unit: str, *,
                      stack_level: int, transaction_id: str | int | None,
                      number_phases: int | None, switching: bool = False,
                      phase_to_use: bool = False) -> dict:
    """TxProfile (in a transaction) or TxDefaultProfile (without) for one connector, one
    period from now on.

    `number_phases` goes out with a limit in A (it sets what the A are per phase of), and
    with any unit on a charger that switches phases (`switching`): there it is the switch
    itself (1.6 7.13 / 2.0.1 ChargingSchedulePeriodType: the phases that may be used, 3
    when absent). `phase_to_use` (2.0.1 only, on an EVSE that reports
    ACPhaseSwitchingSupported) pins a one-phase charge to the charger's L1, the conductor
    the agent books it on; 2.0.1 allows it only with numberPhases = 1."""
    tx = transaction_id is not None
    profile: dict = {
        "stackLevel": stack_level,
        "chargingProfilePurpose": "TxProfile" if tx else "TxDefaultProfile",
        "chargingProfileKind": "Relative",
    }
    use = 1 if phase_to_use and version != "1.6" and number_phases == 1 else None
    periods = _periods((0, limit), number_phases=number_phases if unit == "A" or switching
                       else None, phase_to_use=use)  # fmt: skip
    if version == "1.6":
        profile["chargingProfileId"] = (TX_PROFILE_BASE if tx else DEFAULT_PROFILE_BASE) + idx
        profile["chargingSchedule"] = {"chargingRateUnit": unit, "chargingSchedulePeriod": periods}
        if tx:
            profile["transactionId"] = int(transaction_id)  # type: ignore[arg-type]
    else:
        profile["id"] = (TX_PROFILE_BASE if tx else DEFAULT_PROFILE_BASE) + idx
        profile["chargingSchedule"] = [{"id": profile["id"], "chargingRateUnit": unit,
                                        "chargingSchedulePeriod": periods}]
        if tx:
            profile["transactionId"] = str(transaction_id)
    return profile


def max_profile(version: str, ceiling: float, fallback: float, unit: str, *, now: datetime,
                hold_s: float, stack_level: int, number_phases: int | None) -> dict:
    """ChargePointMaxProfile (1.6) / ChargingStationMaxProfile (2.0.1): `ceiling` until
    now + hold_s, then `fallback` for good (see the module docstring)."""
    periods = _periods((0, ceiling), (max(1, int(hold_s)), min(fallback, ceiling)),
                       number_phases=number_phases if unit == "A" else None)
    schedule = {"startSchedule": iso(now), "chargingRateUnit": unit,
                "chargingSchedulePeriod": periods}
    if version == "1.6":
        return {"chargingProfileId": MAX_PROFILE_ID, "stackLevel": stack_level,
                "chargingProfilePurpose": "ChargePointMaxProfile",
                "chargingProfileKind": "Absolute", "chargingSchedule": schedule}
    return {"id": MAX_PROFILE_ID, "stackLevel": stack_level,
            "chargingProfilePurpose": "ChargingStationMaxProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": [{"id": MAX_PROFILE_ID, **schedule}]}


def limit_at(periods: list[dict], offset_s: float) -> float | None:
    """The limit a schedule's periods (relative to its start, as GetCompositeSchedule
    returns them) give at `offset_s`; None before the first period."""
    limit = None
    for p in sorted(periods, key=lambda p: p["startPeriod"]):
        if p["startPeriod"] <= offset_s:
            limit = float(p["limit"])
    return limit
