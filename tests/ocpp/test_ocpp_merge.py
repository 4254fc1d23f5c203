"""The CSMS's profiles as the relay keeps them (local controller mode): the limit in force on
a connector by OCPP's precedence, replacement and clearing, in kW from W or A."""

from __future__ import annotations

from agent.config.ocpp import OcppChargerConfig
from agent.ocpp.merge import CsmsProfiles, parse_set_profile

CFG = OcppChargerConfig(charge_point_id="CP1", connectors=2, max_power_kw=50.0, phases=3)
T0 = 1_700_000_000.0


def p16(pid, purpose, stack, limits, *, connector=1, tx=None, unit="W", kind="Relative",
        start=None):
    schedule = {"chargingRateUnit": unit,
                "chargingSchedulePeriod": [{"startPeriod": s, "limit": v} for s, v in limits]}
    if start is not None:
        schedule["startSchedule"] = start
    prof = {"chargingProfileId": pid, "stackLevel": stack, "chargingProfilePurpose": purpose,
            "chargingProfileKind": kind, "chargingSchedule": schedule}
    if tx is not None:
        prof["transactionId"] = tx
    return parse_set_profile("1.6", {"connectorId": connector, "csChargingProfiles": prof}, T0)


def test_precedence_tx_profile_over_default_and_connector_over_station_wide():
    ps = CsmsProfiles()
    ps.add(p16(1, "TxDefaultProfile", 0, [(0, 40000)], connector=0))
    assert ps.connector_kw(1, None, CFG, T0) == 40.0
    ps.add(p16(2, "TxDefaultProfile", 0, [(0, 30000)], connector=1))
    assert ps.connector_kw(1, None, CFG, T0) == 30.0 and ps.connector_kw(2, None, CFG, T0) == 40.0
    ps.add(p16(3, "TxProfile", 0, [(0, 20000)], tx=7))
    assert ps.connector_kw(1, 7, CFG, T0) == 20.0
    assert ps.connector_kw(1, None, CFG, T0) == 30.0  # no transaction: its default
    ps.add(p16(4, "TxProfile", 3, [(0, 45000)], tx=7))  # the higher stack level wins
    assert ps.connector_kw(1, 7, CFG, T0) == 45.0
    ps.tx_ended(7)
    assert ps.connector_kw(1, 7, CFG, T0) == 30.0


def test_replacement_clearing_schedules_and_amps():
    ps = CsmsProfiles()
    ps.add(p16(5, "TxDefaultProfile", 1, [(0, 16), (600, 32)], unit="A", kind="Absolute",
               start="2023-11-14T22:13:20Z"))  # T0
    assert abs(ps.connector_kw(1, None, CFG, T0 + 10) - 16 * 3 * 230 / 1000) < 1e-9
    assert abs(ps.connector_kw(1, None, CFG, T0 + 601) - 32 * 3 * 230 / 1000) < 1e-9
    ps.add(p16(6, "TxDefaultProfile", 1, [(0, 10000)]))  # same purpose, stack, connector
    assert set(ps.by_id) == {6} and ps.connector_kw(1, None, CFG, T0) == 10.0
    ps.add(p16(8, "TxDefaultProfile", 2, [(0, 22000), (3600, 5000)], kind="Recurring"))
    assert ps.connector_kw(1, None, CFG, T0) == 5.0  # recurring: its lowest period
    ps.add(p16(9, "ChargePointMaxProfile", 0, [(0, 35000)], connector=0))
    assert ps.max_kw(CFG, T0) == 35.0
    ps.clear({"chargingProfilePurpose": "TxDefaultProfile"})
    assert ps.connector_kw(1, None, CFG, T0) is None and ps.max_kw(CFG, T0) == 35.0
    ps.clear({"id": 9})
    assert ps.max_kw(CFG, T0) is None


def test_what_is_not_understood_is_not_merged():
    assert parse_set_profile("1.6", {"connectorId": 1}) is None
    assert parse_set_profile("2.0.1", {"evseId": 1, "chargingProfile": {"id": 1}}) is None
    p = parse_set_profile("2.0.1", {"evseId": 1, "chargingProfile": {
        "id": 3, "stackLevel": 1, "chargingProfilePurpose": "TxProfile", "transactionId": "t1",
        "chargingProfileKind": "Relative", "chargingSchedule": [
            {"id": 3, "chargingRateUnit": "W",
             "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 11000}]}]}}, T0)
    assert p is not None and p.tx_id == "t1" and p.limit_kw(T0, CFG) == 11.0
