"""V2G in the simulator's physics: a bidirectional charger takes negative limits, a V2G EV
follows them down to its v2gMinSoc at 0.90 efficiency, and the grid meter sees it. Stepped
with simulated seconds only (no sleeping)."""

from __future__ import annotations

import pytest
from hardware_sim.physics import Ev, StationModel
from hardware_sim.station import StationError, parse_station

STATION = {
    "stationId": "V2G",
    "gridCapacity": 100.0,
    "chargers": [
        {"id": "BIDI", "maxPower": 50.0, "connectors": 1, "kind": "dc", "v2g": True},
        {"id": "UNI", "maxPower": 50.0, "connectors": 1, "kind": "dc"},
    ],
}


def model() -> StationModel:
    m = StationModel(parse_station(STATION))
    m.base_load_override, m.pv_override = 30.0, 0.0
    for charger in m.chargers.values():
        charger.comm_timeout_s = 1e9  # no EMS silence in these tests (the last one aside)
    return m


def v2g_ev(soc: float = 0.5, v2g: bool = True) -> Ev:
    return Ev(max_kw=50.0, capacity_kwh=60.0, soc=soc, energy_needed_kwh=10.0, v2g=v2g)


def test_v2g_ev_follows_a_negative_limit_and_the_meter_sees_it() -> None:
    m = model()
    m.plug("BIDI", 1, v2g_ev())
    m.chargers["BIDI"].write_limit(1, -15.0, m.t)
    m.advance(2.0)
    conn = m.chargers["BIDI"].connector(1)
    assert conn.power_kw == pytest.approx(-15.0)
    assert conn.state == "C"
    assert m.meter.total_kw == pytest.approx(30.0 - 15.0)
    soc0, charged0, out0 = conn.ev.soc, conn.session_energy_kwh, conn.discharged_kwh
    m.advance(3600.0)  # one hour at 15 kW out: 15 / 0.90 kWh from the battery
    assert conn.discharged_kwh - out0 == pytest.approx(15.0, rel=0.001)
    assert (soc0 - conn.ev.soc) * 60.0 == pytest.approx(15.0 / 0.90, rel=0.01)
    assert conn.session_energy_kwh == charged0  # the charging counter does not move
    assert m.meter.export_kwh == 0.0  # still importing 15 kW net


def test_discharge_capped_at_22_kw_and_stops_at_v2g_min_soc() -> None:
    m = model()
    ev = v2g_ev(soc=0.25)  # 0.05 x 60 kWh = 3 kWh above the 0.2 floor
    m.plug("BIDI", 1, ev)
    m.chargers["BIDI"].write_limit(1, -50.0, m.t)
    m.advance(2.0)
    conn = m.chargers["BIDI"].connector(1)
    assert conn.power_kw == pytest.approx(-22.0)  # maxV2gPower
    m.advance(600.0)  # 3 kWh x 0.90 at 22 kW is ~7.4 minutes
    assert conn.power_kw == 0.0
    assert ev.soc == pytest.approx(0.2, abs=0.001)
    assert conn.discharged_kwh == pytest.approx(3.0 * 0.90, rel=0.01)
    assert m.meter.total_kw == pytest.approx(30.0)


def test_negative_limit_is_zero_for_non_v2g_evs_and_unidirectional_chargers() -> None:
    m = model()
    m.plug("BIDI", 1, v2g_ev(v2g=False))
    m.plug("UNI", 1, v2g_ev())
    m.chargers["BIDI"].write_limit(1, -15.0, m.t)
    m.chargers["UNI"].write_limit(1, -15.0, m.t)
    m.advance(2.0)
    assert m.chargers["BIDI"].connector(1).power_kw == 0.0
    assert m.chargers["UNI"].connector(1).power_kw == 0.0
    assert m.chargers["UNI"].connector(1).commanded_kw == 0.0  # clamped on write


def test_back_to_charging_and_fallback_ends_a_discharge() -> None:
    m = model()
    m.plug("BIDI", 1, v2g_ev())
    charger = m.chargers["BIDI"]
    charger.comm_timeout_s, charger.fallback_kw = 5.0, 0.0
    charger.write_limit(1, -20.0, m.t)
    m.advance(2.0)
    charger.write_limit(1, 10.0, m.t)
    m.advance(2.0)
    assert charger.connector(1).power_kw == pytest.approx(10.0)
    charger.write_limit(1, -20.0, m.t)
    m.advance(6.0)  # silent past the communication timeout: fallback 0 kW
    assert charger.timed_out and charger.connector(1).power_kw == 0.0


def test_station_file_marks_chargers_bidirectional() -> None:
    spec = parse_station(STATION)
    assert [c.v2g for c in spec.chargers] == [True, False]
    bad = {**STATION, "chargers": [{"id": "X", "maxPower": 22.0, "v2g": "yes"}]}
    with pytest.raises(StationError, match=r"chargers\[0\]\.v2g"):
        parse_station(bad)
