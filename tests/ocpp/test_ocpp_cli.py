"""OCPP chargers through the technician's tools: a real `sems run` daemon serving a simulated
1.6J charge point, then `sems devices`, `sems ocpp log` and `/metrics` against it."""

from __future__ import annotations

import asyncio
import json
import socket
import sys

import pytest
from hardware_sim.ocpp_chargepoint import SimChargePoint
from hardware_sim.simulator import Simulator
from sim_agent import agent_config, write_config

from tests.integration.e2e_helpers import agent_env, api, start_agent, stop_agent

pytestmark = pytest.mark.timeout(120)

STATION = {"stationId": "OC1", "gridCapacity": 100.0, "chargers": [
    {"id": "CP1", "maxPower": 50.0, "connectors": 1, "kind": "dc"},
]}  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def sems(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent.cli", *args, env=agent_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def test_devices_log_and_metrics_show_an_ocpp_charger(tmp_path):
    asyncio.run(asyncio.wait_for(_scenario(tmp_path), 110))


async def _scenario(tmp_path):
    port = _free_port()
    sock = tmp_path / "api.sock"
    async with Simulator(STATION, rtu_meter=False) as sim:
        cfg = agent_config(sim.endpoints, tmp_path / "agent.db", station_id="OC1")
        cfg["station"]["grid_capacity_kw"] = STATION["gridCapacity"]
        cfg["devices"] = [d if d["name"] != "CP1" else {
            "name": "CP1", "kind": "charger", "protocol": "ocpp",
            "ocpp": {"charge_point_id": "CP1", "version": "1.6"}} for d in cfg["devices"]]
        cfg["ocpp"] = {"host": "127.0.0.1", "port": port, "min_interval_s": 0.2}
        config = write_config(cfg, tmp_path / "agent.toml")
        agent = await start_agent(config, tmp_path / "agent.log")
        cp = SimChargePoint(sim, "CP1", f"ws://127.0.0.1:{port}/ocpp/CP1", version="1.6")
        try:
            await cp.start()
            await cp.plug(1, max_kw=40.0)

            async def ocpp_view() -> dict | None:
                code, out, _ = await sems("devices", "--socket", str(sock), "--json")
                if code not in (0, 1) or not out.strip():
                    return None
                return next((d["ocpp"] for d in json.loads(out) if d.get("ocpp")), None)

            view: dict | None = None
            for _ in range(60):  # generous: subprocesses on a shared machine
                view = await ocpp_view()
                if view and view["connected"] and view["connectors"][0]["lastAnswer"] == "Accepted" \
                        and view["connectors"][0]["transactionId"] is not None:
                    break
                await asyncio.sleep(1.0)
            assert view is not None and view["connected"], view
            assert view["version"] == "1.6" and view["boot"]["vendor"] == "sems-sim"
            assert view["connectors"][0]["lastAnswer"] == "Accepted"
            # Its connector has a profile of its own: the max profile may stand at the rating.
            assert view["maxProfile"]["opened"] is True

            code, out, err = await sems("devices", "--socket", str(sock))
            assert code == 0, err + out
            assert "CP1#1" in out and "sems-sim" in out and "connected" in out
            assert "TxProfile" in out and "Accepted" in out
            assert "held at fallback" not in out

            code, out, err = await sems("ocpp", "log", "CP1", "-n", "200", "--socket", str(sock))
            assert code == 0, err
            assert "BootNotification" in out and "SetChargingProfile" in out
            assert "charger ->" in out and "-> charger" in out
            code, out, err = await sems("ocpp", "log", "NOPE", "--socket", str(sock))
            assert code != 0 and "NOPE" in err and "Traceback" not in err

            async with api(sock) as http:
                text = (await http.get("/metrics")).text
            assert 'sems_ocpp_calls_total{charge_point="CP1",direction="to_charger"}' in text
            assert 'sems_ocpp_round_trip_ms{charge_point="CP1",quantile="0.5"}' in text
            assert 'sems_ocpp_connected{charge_point="CP1"} 1.0' in text
        finally:
            await cp.stop()
            await stop_agent(agent)


def test_devices_table_says_when_a_charger_is_held_at_its_fallback():
    """A connector without an accepted profile of its own keeps the charger's max profile at
    the fallback (agent/ocpp/charger.py, MaxProfileState.opened): the table says so."""
    from agent.cli.commands.ocpp import ocpp_table

    def device(opened: bool) -> dict:
        return {"ocpp": {"chargePointId": "CP9", "version": "2.0.1", "connected": True,
                         "maxProfile": {"opened": opened},
                         "connectors": [{"idx": 1, "lastAnswer": "Rejected"}]}}

    assert "held at fallback" in ocpp_table([device(False)])
    assert "held at fallback" not in ocpp_table([device(True)])
