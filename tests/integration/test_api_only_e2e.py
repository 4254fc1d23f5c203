"""The API-only station through the daemon's real socket: `sems run` with a grid meter and
no charger devices, the chargers known only from POST /station/config (Electra's mode). A
session gets only free headroom at once, converges to the fair share within cycles, is
capped by a low power-update, is priced, and stops (204)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import tomli_w
from e2e_helpers import STATION, api, start_agent, stop_agent, wait_for
from hardware_sim.simulator import Simulator

pytestmark = pytest.mark.timeout(90)


def api_only_config(meter: dict, tmp: Path) -> Path:
    cfg = {
        "station": {"id": "API1", "grid_capacity_kw": 60.0, "grid_meter": "meter",
                    "pessimistic_base_load_kw": 10.0},
        "devices": [{"name": "meter", "kind": "meter", "profile": meter["profile"],
                     "unit_id": meter["unit"], "endpoint": f"tcp://{meter['tcp']}"}],
        "control": {"period_s": 0.1, "stale_after_s": 0.5},
        "planner": {"enabled": False},
        "api": {"socket_path": str(tmp / "api.sock")},
        "storage": {"db_path": str(tmp / "agent.db")},
    }  # fmt: skip
    path = tmp / "agent.toml"
    path.write_text(tomli_w.dumps(cfg))
    return path


def test_electra_sessions_through_the_api_only_daemon(tmp_path):
    asyncio.run(asyncio.wait_for(_scenario(tmp_path), 80))


async def _scenario(tmp: Path) -> None:
    log = tmp / "agent.log"
    sock = tmp / "api.sock"
    async with Simulator(STATION, rtu_meter=False) as sim:
        agent = await start_agent(api_only_config(sim.endpoints["meter"], tmp), log)
        try:
            await wait_for(sock.exists, 30, "the API socket")
            async with api(sock) as http:
                config = {"stationId": "API1", "gridCapacity": 60.0, "baseLoad": 10.0,
                          "chargers": [{"id": "DC1", "maxPower": 60.0, "connectors": 2}]}
                assert (await http.post("/station/config", json=config)).status_code == 200
                assert (await http.get("/station/config")).json()["chargers"][0]["id"] == "DC1"

                def new(idx: int, kw: float) -> dict:
                    return {"connectorId": {"chargerId": "DC1", "idx": idx}, "vehicleMaxPower": kw}

                first = await http.post("/sessions", json=new(1, 50.0))
                assert first.status_code == 200
                a = first.json()["session"]
                assert a["allocatedPower"] == pytest.approx(50.0, abs=0.01)
                assert (await http.post("/sessions", json=new(1, 50.0))).status_code == 409
                assert (await http.post("/sessions", json=new(3, 50.0))).status_code == 404
                # The second gets only what is free now (60 - 10 - 50 = 0), then its share.
                b = (await http.post("/sessions", json=new(2, 50.0))).json()["session"]
                assert b["allocatedPower"] <= 0.01

                async def allocations() -> dict[str, float]:
                    status = (await http.get("/station/status")).json()["sessions"]
                    return {k: v["allocatedPower"] for k, v in status.items()}

                async def converged() -> bool:
                    got = await allocations()
                    return all(abs(v - 25.0) < 0.05 for v in got.values())

                await _until(converged, 5, "fair shares of 25 kW")
                # A session drawing 10 kW is capped near it; the other (no report) gets the rest.
                ida, idb = a["sessionId"], b["sessionId"]
                for _ in range(3):
                    r = await http.post(f"/sessions/{ida}/power-update", json={"consumedPower": 10.0})
                    assert r.status_code == 200
                    await asyncio.sleep(0.4)

                async def capped() -> bool:
                    got = await allocations()
                    return got[ida] < 12.0 and got[idb] > 35.0

                await _until(capped, 5, "A capped near its draw, B given the rest")
                unknown = await http.post("/sessions/nope/power-update", json={"consumedPower": 1})
                assert unknown.status_code == 404
                assert (await http.post(f"/sessions/{ida}/stop")).status_code == 204
                assert ida not in await allocations()
                # Priced at the [tariff] default import price (0.25 EUR/kWh).
                cost = (await http.get("/api/v1/analytics/cost-analysis")).json()
                assert cost["energy_kwh"] > 0
                assert cost["cost_eur"] == pytest.approx(0.25 * cost["energy_kwh"], abs=2e-4)
            assert await stop_agent(agent) == 0
        finally:
            await stop_agent(agent)
            if agent.returncode not in (0, None):
                print(log.read_text()[-4000:])


async def _until(pred, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await pred():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
