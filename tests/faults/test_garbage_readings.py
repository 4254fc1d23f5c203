"""Garbage charger readings (issue 12, finding 4) against the simulator: a charger
answering random register words while an EV charges. Nothing of it is booked (the
session's energy stays what the simulator delivered, no discharge on a charger that is
not V2G), health names the device, and the import stays within capacity."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from .harness import Scenario

pytestmark = pytest.mark.timeout(90)


def booked(db_path) -> list[tuple[str, float, float]]:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT charger_id, energy_kwh, discharged_kwh FROM sessions").fetchall()


def test_garbage_charger_readings_are_never_booked(tmp_path):
    async def scenario() -> None:
        async with Scenario(tmp_path) as sc:
            await sc.start_charging()
            await sc.wait_for(lambda: sc.connector("CP1", 1)["power"] > 10.0, 10, "charging")
            sc.sim.inject("CP1", "garbage", mode="random")
            modes_seen: set[str] = set()
            for _ in range(30):  # 3 s of random words
                await sc.run_for(0.1)
                detail = (await sc.health())["dependencies"]["control"].get("detail") or ""
                modes_seen.update(detail.split(", "))
            assert any(m in ("implausible:CP1", "charger_unreachable:CP1") for m in modes_seen), \
                modes_seen
            sc.sim.clear("CP1")
            await sc.run_for(2.0)
            sc.check_invariants()
            assert await sc.agent.stop() == 0
            truth = sc.connector("CP1", 1)["sessionEnergy"]
            rows = booked(sc.agent.db_path)
            assert rows and all(d == 0.0 for _, _, d in rows), rows  # CP1 is not V2G
            total = sum(e for cid, e, _ in rows if cid == "CP1")
            assert 0.0 <= total <= truth + 0.05, (total, truth)
            log = sc.agent.log()
            assert "Traceback" not in log

    asyncio.run(scenario())
