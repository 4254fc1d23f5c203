"""Local controller mode against a fake operator CSMS: the simulated charge point connects to
the agent, which relays it upstream (basic auth, security profile 1) and adds its own limits.

What is checked is what crossed the sockets at both ends (the simulator's charge point and
the fake CSMS record their frames), and the power the simulator's physics draws:
- every call of the charger reaches the CSMS exactly once, transaction messages and the
  others each in their order, including across a 60 s CSMS outage (the issue's; during it
  the charger's meter values and a transaction start are answered by the agent and queued);
- every CSMS call reaches the charger once and its answer goes back; the answers to the
  agent's own calls never reach the CSMS;
- the CSMS's TxProfile and the agent's limit compose as the minimum on the charger.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
import subprocess
from collections import Counter
from typing import Any

import pytest
from fake_csms import FakeCsms, csms_profile, csms_with_password
from ocpp_station import ocpp_station

STATION = {"stationId": "LC1", "gridCapacity": 60.0, "chargers": [
    {"id": "CP1", "maxPower": 200.0, "connectors": 1, "kind": "dc"},
]}  # fmt: skip
# No consumption caps here (cap_after_s beyond the test): with meter values once a minute
# (below), a sample taken while the EV ramps up caps the session at that draw + 0.3 kW until
# the next sample a minute later, longer than the wait below (the likely cause of a fresh-clone
# failure at 4.14 kW; agent/control/caps.py now counts a repeated sample once). Caps are not
# what this test is about (tests/agent/test_caps_slow_meters.py is).
CONTROL = {"headroom_margin_kw": 0.0, "probe_margin_kw": 0.3, "probe_margin_fraction": 0.0,
           "cap_after_s": 3600.0, "deadband_kw": 0.2, "comm_timeout_s": 10}
# Meter values once a minute: the outage then starts with no charger call in flight (a call
# in flight when the CSMS drops is sent again, which a test of "exactly once" cannot allow).
OCPP = {"min_interval_s": 0.2, "meter_interval_s": 60}
# The 60 s; SEMS_OCPP_OUTAGE_S=3 shortens it while working on the relay.
OUTAGE_S = float(os.environ.get("SEMS_OCPP_OUTAGE_S", "60"))
pytestmark = pytest.mark.timeout(180 + 2 * OUTAGE_S)
AGENT_KW = 40.0  # well above the CSMS's 25 kW below, and below the station's 60 kW


def _frames(raws: list[str]) -> list[list]:
    return [json.loads(r) for r in raws]


def _is_tx(version: str, action: str, payload: dict) -> bool:
    if version == "1.6":
        return action in ("StartTransaction", "StopTransaction") or (
            action == "MeterValues" and payload.get("transactionId") is not None)
    return action == "TransactionEvent"


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_relay_passes_everything_once_in_order_and_merges_limits(tmp_path, version):
    asyncio.run(_relay(tmp_path, version))


async def _relay(tmp_path, version):
    async with csms_with_password(tmp_path) as (csms, pw), ocpp_station(
            tmp_path, STATION, {"CP1": version}, control=CONTROL,
            ocpp={**OCPP, "upstream": csms.url},
            charger_cfg={"upstream_password_file": pw}) as st:
        await _scenario(st, csms, version)


async def _scenario(st, csms, version):
    cp, charger, relay = st.cps["CP1"], st.cs.chargers["CP1"], st.cs.relays["CP1"]
    assert await st.until(lambda: any(a == "BootNotification" for _, a, _ in csms.calls("CP1")))
    assert csms.auth_failures == 0
    assert await st.until(lambda: charger.ready)
    st.run()
    await cp.plug(1, max_kw=150.0)

    # The agent alone: what the station's 60 kW leave (the loop keeps its margins).
    assert await st.until(lambda: st.power("CP1", 1) >= AGENT_KW, timeout=60), (
        st.power("CP1", 1))
    tx = cp.tx[1].id
    # The CSMS limits the transaction to 25 kW: the minimum binds on the charger.
    answer = await csms.cps["CP1"].call(csms_profile(version, tx, 25000))
    assert answer.status == "Accepted"
    assert await st.until(lambda: abs(st.power("CP1", 1) - 25.0) <= 1.0, timeout=60), (
        st.power("CP1", 1))
    assert cp.limits_kw()[1] <= 25.0 + 1e-6
    # The agent's profile sits above the CSMS's and says the minimum.
    assert max(p.stack for p in cp.store.profiles if p.purpose == "TxProfile") == 50
    # The CSMS allows 100 kW: the agent's limit binds again, never above the station's 60,
    # and stays. The EV's ramp shows at the grid meter up to a meter interval (60 s here)
    # before its sample does: read as base load, it took the agent's limit down to 19-24 kW
    # and the next sample (taken before the EV followed) read more than the meter, which
    # was judged implausible; the limit was at 60 kW in 4-6 of 240 half-seconds
    # (agent/control/counted_draws.py). Each half-second of 20 s is checked.
    answer = await csms.cps["CP1"].call(csms_profile(version, tx, 100000))
    assert answer.status == "Accepted"
    assert await st.until(lambda: cp.limits_kw()[1] >= AGENT_KW, timeout=60), cp.limits_kw()
    for _ in range(40):
        await asyncio.sleep(0.5)
        assert cp.limits_kw()[1] >= AGENT_KW, cp.limits_kw()
        assert "grid_meter_implausible" not in st.loop.state.modes

    # ---- the CSMS goes away for OUTAGE_S (60 s) ---------------------------------------------
    await csms.stop()
    assert await st.until(lambda: not relay.connected_upstream)
    await cp.unplug(1)
    await cp.plug(1, max_kw=150.0)  # a transaction started while the CSMS is away
    # The charger keeps charging under the agent's limit (the old CSMS profile died with its
    # transaction), measured on the simulator.
    assert await st.until(lambda: cp.limits_kw()[1] >= AGENT_KW, timeout=60), cp.limits_kw()
    assert cp.limits_kw()[1] <= 60.0
    await asyncio.sleep(OUTAGE_S)  # the outage itself (no assertion on its length)
    assert relay.describe()["queued"] > 0
    await csms.start()  # same port
    assert await st.until(lambda: relay.forwarding and relay.describe()["queued"] == 0,
                          timeout=90)
    await cp.unplug(1)  # its stop goes straight through, with the CSMS's transaction id

    # ---- what crossed, at both ends ------------------------------------------------------
    def charger_calls() -> list[list]:
        return [m for m in _frames(cp.sent) if m[0] == 2]

    assert await st.until(lambda: {m[1] for m in charger_calls()} <= {
        i for i, _, _ in csms.calls("CP1")}, timeout=60)
    sent = charger_calls()
    got = csms.calls("CP1")
    counts = Counter(i for i, _, _ in got)
    assert all(n == 1 for n in counts.values()), [i for i, n in counts.items() if n > 1]
    assert set(counts) == {m[1] for m in sent}  # nothing of the agent's own reached the CSMS
    for tx_class in (True, False):
        mine = [m[1] for m in sent if _is_tx(version, m[2], m[3]) is tx_class]
        theirs = [i for i, a, p in got if _is_tx(version, a, p) is tx_class and i in set(mine)]
        assert theirs == mine, f"transaction messages={tx_class}: order differs"
    # The relay answered the charger while the CSMS was away, and replayed those calls.
    assert relay.stats.answered_locally > 0 and relay.stats.replayed > 0

    # The CSMS's calls reached the charger once each; their answers went back once each;
    # the agent's calls (ids sems-...) were answered by the charger but never upstream.
    csms_calls = [m[1] for m in _frames(csms.sent["CP1"]) if m[0] == 2]
    at_charger = Counter(m[1] for m in _frames(cp.received) if m[0] == 2)
    assert len(csms_calls) == 2 and all(at_charger[i] == 1 for i in csms_calls)
    assert Counter(csms.answers("CP1")) == Counter(csms_calls)
    agent_ids = [i for i in at_charger if str(i).startswith("sems-")]
    assert agent_ids, "the agent made its own calls to the charger"
    assert not set(agent_ids) & set(csms.answers("CP1"))

    if version == "1.6":
        # The offline transaction got the agent's id at the charger, the CSMS's upstream.
        starts = [i for i, a, _ in got if a == "StartTransaction"]
        stops = [p for _, a, p in got if a == "StopTransaction"]
        given = [json.loads(r)[2]["transactionId"] for r in csms.sent["CP1"]
                 if json.loads(r)[0] == 3 and json.loads(r)[1] in starts]
        assert [s["transactionId"] for s in stops] == given[:len(stops)]


def _self_signed(tmp_path, name: str, *, ip: bool) -> tuple:
    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    san = ["-addext", "subjectAltName=IP:127.0.0.1"] if ip else []
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", f"/CN={name}", *san, "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_upstream_security_profile_3_client_certificate(tmp_path):
    """The relay logs in at a wss CSMS that demands a client certificate (profile 3); without
    one the handshake fails, the agent answers the charger itself and queues its calls."""
    csms_cert, csms_key = _self_signed(tmp_path, "csms", ip=True)
    cp_cert, cp_key = _self_signed(tmp_path, "CP1", ip=False)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(str(csms_cert), str(csms_key))
    server.verify_mode = ssl.CERT_REQUIRED
    server.load_verify_locations(cafile=str(cp_cert))

    async def run(with_cert: bool) -> tuple[FakeCsms, Any]:
        csms = FakeCsms(ssl_context=server)
        await csms.start()
        cfg: dict = {"upstream_ca_file": csms_cert}
        if with_cert:
            cfg.update(upstream_cert_file=cp_cert, upstream_key_file=cp_key)
        try:
            async with ocpp_station(tmp_path, STATION, {"CP1": "1.6"}, with_loop=False,
                                    ocpp={**OCPP, "upstream": csms.url},
                                    charger_cfg=cfg) as st:
                relay = st.cs.relays["CP1"]
                if with_cert:
                    assert await st.until(lambda: any(
                        a == "BootNotification" for _, a, _ in csms.calls("CP1")))
                    assert relay.connected_upstream
                else:
                    # The charger still boots (the agent answers) and its boot waits in the queue.
                    assert await st.until(lambda: st.cps["CP1"].boots == 1)
                    assert relay.describe()["queued"] >= 1 and not relay.connected_upstream
                    assert csms.calls("CP1") == []
                return csms, relay
        finally:
            await csms.stop()

    asyncio.run(run(True))
    asyncio.run(run(False))
