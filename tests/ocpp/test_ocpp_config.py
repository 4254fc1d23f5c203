"""`protocol = "ocpp"` devices and [ocpp]: validated with clear key paths, wired into the
control loop's device set."""

from __future__ import annotations

import asyncio

import pytest

from agent.config.settings import AgentSettings, cross_check
from agent.control.devices import StationDevices
from agent.ocpp.charger import OcppCharger
from agent.ocpp.wiring import attach_ocpp

BASE = {
    "station": {"id": "S1", "grid_capacity_kw": 60.0, "grid_meter": "meter",
                "pessimistic_base_load_kw": 10.0,
                "chargers": [{"id": "C1", "device": "dc1", "max_power_kw": 50.0, "connectors": 2}]},
    "devices": [
        {"name": "meter", "kind": "meter", "profile": "sim-meter", "endpoint": "tcp://127.0.0.1:1502"},
        {"name": "dc1", "kind": "charger", "protocol": "ocpp",
         "ocpp": {"charge_point_id": "DC-01", "version": "1.6", "rate_unit": "W"}},
    ],
}  # fmt: skip


def test_an_ocpp_charger_is_wired_in_as_a_charger():
    async def run():
        s = AgentSettings(**BASE)
        assert cross_check(s) == []
        devices = StationDevices(s)
        central = attach_ocpp(devices, s)
        assert central is not None and set(central.chargers) == {"DC-01"}
        ch = devices.chargers["C1"]
        assert isinstance(ch, OcppCharger) and ch.connectors == 2
        assert ch.cfg.max_power_kw == 50.0 and ch.cfg.rate_unit == "W"
        await devices.close()

    asyncio.run(run())


@pytest.mark.parametrize(("change", "message"), [
    ({"protocol": "ocpp", "kind": "meter"}, "ocpp is for chargers only"),
    ({"protocol": "modbus", "ocpp": None}, "profile: required"),
    ({"ocpp": {"charge_point_id": "bad id!"}}, "devices.1.ocpp.charge_point_id"),
    ({"ocpp": {"charge_point_id": "X", "version": "3.0"}}, "devices.1.ocpp.version"),
])  # fmt: skip
def test_bad_ocpp_entries_name_the_field(change, message):
    dev = {**BASE["devices"][1], **change}
    with pytest.raises(Exception) as e:
        AgentSettings(**{**BASE, "devices": [BASE["devices"][0], dev]})
    assert message in str(e.value).replace("[", ".").replace("]", "")


def test_config_check_names_ocpp_problems(tmp_path):
    s = AgentSettings(**{**BASE, "ocpp": {"tls_cert_file": str(tmp_path / "nope.pem"),
                                          "upstream": "http://csms"}})
    problems = cross_check(s)
    assert any(p.startswith("ocpp.tls_cert_file, ocpp.tls_key_file") for p in problems)
    assert any(p.startswith("ocpp.tls_cert_file: no such file") for p in problems)
    assert any(p.startswith("ocpp.upstream: expected ws://") for p in problems)


def test_config_check_accepts_local_controller_mode_and_names_upstream_problems(tmp_path):
    pw = tmp_path / "csms-pw"
    pw.write_text("secret\n")
    pw.chmod(0o600)  # a group-readable secret is a finding of its own
    good = {**BASE["devices"][1], "ocpp": {**BASE["devices"][1]["ocpp"],
                                            "upstream_password_file": str(pw)}}
    s = AgentSettings(**{**BASE, "devices": [BASE["devices"][0], good],
                         "ocpp": {"upstream": "wss://csms.example/ocpp"}})
    assert cross_check(s) == []
    bad = {**BASE["devices"][1], "ocpp": {**BASE["devices"][1]["ocpp"],
                                           "upstream_cert_file": str(tmp_path / "none.pem"),
                                           "upstream_password_file": str(tmp_path / "none")}}
    s = AgentSettings(**{**BASE, "devices": [BASE["devices"][0], bad],
                         "ocpp": {"upstream": "ws://csms.example/ocpp"}})
    problems = cross_check(s)
    assert any(p.startswith("devices[1].ocpp.upstream_cert_file, upstream_key_file: give both")
               for p in problems)
    assert any(p.startswith("devices[1].ocpp.upstream_cert_file: client certificates need a "
                            "wss://") for p in problems)
    assert any(p.startswith("devices[1].ocpp.upstream_password_file: no such file")
               for p in problems)
    assert any(p.startswith("devices[1].ocpp.upstream_cert_file: no such file") for p in problems)
