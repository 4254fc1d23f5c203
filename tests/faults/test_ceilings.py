"""Hard ceilings (issue 12, finding 2): the settings file's grid capacity and charger
ratings are the installer's word. A station configuration raising them, from the local
API or stored from earlier, is refused with a field error; nothing above a ceiling is ever
written to a charger; schema-valid odd configurations get a 400, never a 500; lowering is
obeyed, and a file lowered below a stored configuration wins at the next start."""

from __future__ import annotations

import asyncio

import pytest

from .harness import Scenario

pytestmark = pytest.mark.timeout(120)
RATINGS = {"CP1": 50.0, "CP2": 22.0}


def config(capacity: float, cp1: float = 50.0, cp2: float = 22.0, **extra) -> dict:
    return {"stationId": "SIM1", "gridCapacity": capacity, "chargers": [
        {"id": "CP1", "maxPower": cp1, "connectors": 2},
        {"id": "CP2", "maxPower": cp2, "connectors": 1}], **extra}  # fmt: skip


def test_configs_above_the_hard_ceilings_are_refused(tmp_path):
    async def scenario() -> None:
        async with Scenario(tmp_path) as sc:
            commanded: list[tuple[str, float]] = []

            async def watch() -> None:  # every limit the chargers were ever commanded
                while True:
                    commanded.extend((c["chargerId"], c["commandedLimit"])
                                     for c in sc.sim.state()["connectors"])  # fmt: skip
                    await asyncio.sleep(0.05)

            watcher = asyncio.create_task(watch())
            sc.sim.set(base_load_kw=20.0, pv_kw=0.0)
            await sc.start_agent()
            sc.ev("CP1", 1, 50.0)
            sc.ev("CP1", 2, 50.0)
            sc.ev("CP2", 1, 22.0)
            await sc.run_for(1.0)

            for body, field in (
                (config(100_000.0), "config.gridCapacity"),
                (config(60.0, cp1=2_000.0), "config.chargers[0].maxPower"),
                (config(60.5), "config.gridCapacity"),
            ):
                r = await sc.api("POST", "/station/config", json=body)
                assert r.status_code == 400, (r.status_code, r.text)
                assert r.json()["error"].startswith(field), r.json()
            assert (await sc.api("GET", "/station/config")).json()["gridCapacity"] == 60.0
            for body in (config(0.0), {"stationId": "SIM1", "gridCapacity": 50.0, "chargers": []},
                         config(60.0, cp1=5_000.0),
                         {**config(60.0), "chargers": [{"id": "CP1", "maxPower": 50.0,
                                                        "connectors": 12}]}):  # fmt: skip
                r = await sc.api("POST", "/station/config", json=body)
                assert r.status_code in (400, 422), (body, r.status_code, r.text)
            assert "Traceback" not in sc.agent.log()  # a user mistake, not a bug

            # Lowering is obeyed, and stored.
            r = await sc.api("POST", "/station/config", json=config(45.0, cp1=40.0))
            assert r.status_code == 200, r.text
            sc.capacity_changed(45.0)
            await sc.run_for(3.0)
            sc.check_invariants()
            assert await sc.agent.stop() == 0

            # The installer lowers the file below the stored 45 kW: the file wins.
            path = sc.agent.config_path
            path.write_text(path.read_text().replace("grid_capacity_kw = 60.0",
                                                     "grid_capacity_kw = 40.0"))  # fmt: skip
            await sc.agent.start()
            await sc.agent.wait_ready()
            await sc.agent.wait_log(r"stored station configuration ignored \(config\.gridCapacity")
            assert (await sc.api("GET", "/station/config")).json()["gridCapacity"] == 40.0
            sc.capacity_changed(40.0)
            await sc.run_for(3.0)
            sc.check_invariants()
            watcher.cancel()
            over = [(cid, kw) for cid, kw in commanded if kw > RATINGS[cid] + 1e-6]
            assert not over, over[:5]

    asyncio.run(scenario())
