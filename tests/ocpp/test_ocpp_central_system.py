"""The central system's handshake and message handling, against real WebSocket clients on
loopback: the library's charge point classes, as a real charger's stack would use them."""

from __future__ import annotations

import asyncio
import base64
import shutil
import ssl
import subprocess

import pytest
from ocpp.v16 import ChargePoint as Cp16
from ocpp.v16 import call as call16
from ocpp.v201 import ChargePoint as Cp201
from ocpp.v201 import call as call201
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from agent.config.ocpp import OcppChargerConfig, OcppSettings
from agent.ocpp.charger import OcppCharger
from agent.ocpp.server import CentralSystem

pytestmark = pytest.mark.timeout(60)


def _system(tmp_path, *, password=None, tls=None, **ocpp):
    pw_file = None
    if password is not None:
        pw_file = tmp_path / "cp1-password"
        pw_file.write_text(password + "\n")
        pw_file.chmod(0o600)  # a group/world-readable secret file is refused
    settings = OcppSettings(host="127.0.0.1", port=0, **(tls or {}), **ocpp)
    cfg = OcppChargerConfig(charge_point_id="CP1", max_power_kw=22.0, connectors=2,
                            password_file=pw_file)
    return CentralSystem(settings, {"CP1": OcppCharger("CP1", cfg, settings)})


def _auth(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_handshake_refuses_strangers_and_wrong_passwords(tmp_path):
    async def run():
        cs = _system(tmp_path, password="s3cret")
        await cs.start()
        url = f"ws://127.0.0.1:{cs.port}/ocpp"
        try:
            with pytest.raises(InvalidStatus) as e:
                async with connect(f"{url}/INTRUDER", subprotocols=["ocpp1.6"],
                                   additional_headers=_auth("INTRUDER", "s3cret")):
                    pass
            assert e.value.response.status_code == 404
            for headers in ({}, _auth("CP1", "wrong")):
                with pytest.raises(InvalidStatus) as e:
                    async with connect(f"{url}/CP1", subprotocols=["ocpp1.6"],
                                       additional_headers=headers):
                        pass
                assert e.value.response.status_code == 401
            with pytest.raises(InvalidStatus) as e:  # no common subprotocol
                async with connect(f"{url}/CP1", subprotocols=["ocpp0.9"],
                                   additional_headers=_auth("CP1", "s3cret")):
                    pass
            assert e.value.response.status_code == 400
            async with connect(f"{url}/CP1", subprotocols=["ocpp2.0.1", "ocpp1.6"],
                               additional_headers=_auth("CP1", "s3cret")) as ws:
                assert ws.subprotocol == "ocpp2.0.1"
        finally:
            await cs.close()

    asyncio.run(run())


async def _client(cls, ws):
    cp = cls("CP1", ws, response_timeout=5)
    task = asyncio.get_running_loop().create_task(cp.start())
    return cp, task


def test_ocpp16_messages_are_answered_and_feed_the_readings(tmp_path):
    async def run():
        cs = _system(tmp_path, authorize="allow_list", id_tags=["GOOD"])
        await cs.start()
        try:
            async with connect(f"ws://127.0.0.1:{cs.port}/ocpp/CP1",
                               subprotocols=["ocpp1.6"]) as ws:
                cp, task = await _client(Cp16, ws)
                boot = await cp.call(call16.BootNotification(charge_point_vendor="V",
                                                             charge_point_model="M"))
                assert boot.status == "Accepted"
                assert (await cp.call(call16.Authorize(id_tag="BAD"))).id_tag_info["status"] == "Invalid"
                assert (await cp.call(call16.Authorize(id_tag="GOOD"))).id_tag_info["status"] == "Accepted"
                await cp.call(call16.StatusNotification(connector_id=1, error_code="NoError",
                                                        status="Preparing"))
                start = await cp.call(call16.StartTransaction(
                    connector_id=1, id_tag="GOOD", meter_start=1000, timestamp="2026-01-01T00:00:00Z"))
                await cp.call(call16.MeterValues(connector_id=1, transaction_id=start.transaction_id,
                    meter_value=[{"timestamp": "2026-01-01T00:00:10Z", "sampled_value": [
                        {"value": "7.2", "measurand": "Power.Active.Import", "unit": "kW"},
                        {"value": "3500", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
                        {"value": "not a number", "measurand": "SoC"}]}]))  # fmt: skip
                dt = await cp.call(call16.DataTransfer(vendor_id="acme", data="x"))
                assert dt.status == "UnknownVendorId"
                await cp.call(call16.SecurityEventNotification(type="SettingSystemTime", tech_info="t",
                                                               timestamp="2026-01-01T00:00:00Z"))
                await cp.call(call16.Heartbeat())
                charger = cs.chargers["CP1"]
                reading = await charger.read()
                c1 = reading.connectors[0]
                assert (c1.state, c1.power_kw) == ("B", 7.2)
                assert c1.session_energy_kwh == pytest.approx(2.5)
                assert charger.info.boot["vendor"] == "V" and charger.info.last_heartbeat
                assert charger.info.security_events
                await cp.call(call16.StopTransaction(meter_stop=4000, timestamp="2026-01-01T00:01:00Z",
                                                     transaction_id=start.transaction_id))
                assert charger.conns[1].tx_id is None
                task.cancel()
            # Dropped: the loop sees an unreachable charger, never a crash.
            assert await _until(lambda: charger.link is None)
            with pytest.raises(Exception, match="not connected"):
                await charger.read()
        finally:
            await cs.close()

    asyncio.run(run())


def test_ocpp201_messages_are_answered_and_feed_the_readings(tmp_path):
    async def run():
        cs = _system(tmp_path)
        await cs.start()
        try:
            async with connect(f"ws://127.0.0.1:{cs.port}/ocpp/CP1",
                               subprotocols=["ocpp2.0.1"]) as ws:
                cp, task = await _client(Cp201, ws)
                await cp.call(call201.BootNotification(
                    charging_station={"model": "M", "vendor_name": "V"}, reason="PowerUp"))
                await cp.call(call201.TransactionEvent(
                    event_type="Started", timestamp="2026-01-01T00:00:00Z",
                    trigger_reason="CablePluggedIn", seq_no=1,
                    transaction_info={"transaction_id": "T1", "charging_state": "Charging"},
                    evse={"id": 2, "connector_id": 1}, id_token={"id_token": "X", "type": "ISO14443"},
                    meter_value=[{"timestamp": "2026-01-01T00:00:00Z", "sampled_value": [
                        {"value": 10000, "measurand": "Energy.Active.Import.Register"},
                        {"value": 11000, "measurand": "Power.Active.Import", "unit_of_measure": {"unit": "W"}}]}]))  # fmt: skip
                await cp.call(call201.NotifyEVChargingNeeds(
                    evse_id=2, charging_needs={"requested_energy_transfer": "DC",
                                               "dc_charging_parameters": {"ev_max_current": 200, "ev_max_voltage": 800, "ev_max_power": 50000}}))  # fmt: skip
                await cp.call(call201.NotifyReport(request_id=1, generated_at="2026-01-01T00:00:00Z", seq_no=0))
                await cp.call(call201.DataTransfer(vendor_id="acme"))
                charger = cs.chargers["CP1"]
                c2 = (await charger.read()).connectors[1]
                assert (c2.state, c2.power_kw, c2.ev_max_kw) == ("C", 11.0, 50.0)
                await cp.call(call201.TransactionEvent(
                    event_type="Ended", timestamp="2026-01-01T00:01:00Z", trigger_reason="EVCommunicationLost",
                    seq_no=2, transaction_info={"transaction_id": "T1"}))
                assert charger.conns[2].tx_id is None
                assert charger.traffic.calls_in >= 6 and charger.traffic.log
                task.cancel()
        finally:
            await cs.close()

    asyncio.run(run())


async def _until(cond, timeout=10.0):
    for _ in range(int(timeout / 0.05)):
        if cond():
            return True
        await asyncio.sleep(0.05)
    return cond()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_tls_with_the_stations_certificate(tmp_path):
    cert, key = tmp_path / "station.pem", tmp_path / "station.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)

    async def run():
        cs = _system(tmp_path, password="pw", tls={"tls_cert_file": cert, "tls_key_file": key})
        await cs.start()
        try:
            ctx = ssl.create_default_context(cafile=str(cert))
            async with connect(f"wss://127.0.0.1:{cs.port}/ocpp/CP1", subprotocols=["ocpp1.6"],
                               ssl=ctx, additional_headers=_auth("CP1", "pw")) as ws:
                cp, task = await _client(Cp16, ws)
                boot = await cp.call(call16.BootNotification(charge_point_vendor="V",
                                                             charge_point_model="M"))
                assert boot.status == "Accepted"
                task.cancel()
            with pytest.raises(ssl.SSLError):  # a charger that does not trust the certificate
                async with connect(f"wss://127.0.0.1:{cs.port}/ocpp/CP1", subprotocols=["ocpp1.6"],
                                   ssl=ssl.create_default_context()):
                    pass
        finally:
            await cs.close()

    asyncio.run(run())
