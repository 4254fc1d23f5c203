"""Issue 16 end to end: a real `sems run` with its planner, the simulator over Modbus, the
cloud's tariff over Mosquitto. Power costs 0.31 EUR/kWh for the next two hours and 0.12
after; an EV without a known target plugs in. The plan holds it for the cheaper hours
(its charge is worth ~0.16 to the plan: 1.1 x the horizon's mean price), the simulator's
connector stays at 0 kW, and `sems status` says why in words (`--json`: `held`), `sems
sessions` in its short column, and the cloud's telemetry carries the same `held`."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
import sim_agent
from e2e_helpers import (
    STATION,
    api,
    connector,
    messages,
    start_agent,
    stop_agent,
    wait_for,
)
from hardware_sim.simulator import Simulator
from test_daemon_e2e import command, sems

from tests.uplink.helpers import collecting

pytestmark = pytest.mark.timeout(120)


def test_status_says_the_plan_holds_an_ev_for_cheaper_hours(tmp_path, mosquitto):
    asyncio.run(asyncio.wait_for(_scenario(tmp_path, mosquitto), 100))


def _slot(ts: datetime) -> datetime:
    return ts.replace(minute=ts.minute - ts.minute % 15, second=0, microsecond=0)


async def _scenario(tmp_path, broker):
    log = tmp_path / "agent.log"
    sock = tmp_path / "api.sock"
    async with Simulator(STATION, rtu_meter=False) as sim, collecting(broker.port) as cloud:
        config = sim_agent.agent_config(
            sim.endpoints, tmp_path / "agent.db", station_id="E2E1", mqtt_port=broker.port,
            extra={"planner": {"enabled": True, "signal_poll_s": 0.5, "solve_timeout_s": 10.0}})
        sim_agent.write_config(config, tmp_path / "agent.toml")
        agent = await start_agent(tmp_path / "agent.toml", log)
        try:
            await wait_for(lambda: [m for m in messages(cloud, "/state")
                                    if m["status"] == "online"], 30, "state online")
            now = datetime.now(UTC)
            cheap = _slot(now) + timedelta(hours=2)
            await command(broker.port, "tariff.set", {"id": "tariff-1", "slots": [
                {"start": _slot(now).isoformat(), "end": cheap.isoformat(),
                 "importEurKwh": 0.31, "exportEurKwh": 0.05},
                {"start": cheap.isoformat(), "end": (cheap + timedelta(days=1)).isoformat(),
                 "importEurKwh": 0.12, "exportEurKwh": 0.05}]})
            reply = await wait_for(lambda: messages(cloud, "/reply/tariff-1"), 10, "tariff reply")
            assert reply[0]["status"] == "ok", reply
            sim.plug("CP1", 1, max_kw=50, capacity_kwh=80, soc=0.2, energy_needed_kwh=60)

            async with api(sock) as http:
                async def held():
                    st = (await http.get("/api/v1/station")).json()
                    c = next(c for c in st["connectors"] if (c["charger_id"], c["idx"]) == ("CP1", 1))
                    return c if c.get("held") else None

                # Until the re-plan that includes the new EV, the plan made without it still
                # caps the station's import at its planned peak, and the EV is held by that
                # ("peak"): a true reason, but not the one this test is about. Wait for the
                # plan's own reason for this session.
                shown, seen = None, set()
                for _ in range(300):  # a plan within seconds of the session (bounded: 30 s)
                    shown = await held()
                    if shown:
                        seen.add(shown["held"]["reason"])
                        if shown["held"]["reason"] == "price":
                            break
                    await asyncio.sleep(0.1)
                assert shown and shown["held"]["reason"] == "price", (
                    f"no price hold within 30 s (seen {sorted(seen)}):\n" + log.read_text()[-3000:])
                assert seen <= {"peak", "price"}, seen
            h = shown["held"]
            assert h["reason"] == "price" and h["open_ended"]
            assert h["price_now_eur_kwh"] == pytest.approx(0.31)
            assert h["price_then_eur_kwh"] == pytest.approx(0.12)
            assert datetime.fromisoformat(h["until"]) == cheap
            # Held for real: the simulator's connector comes down to nothing (it may have
            # had a fair share before the plan knew it).
            await wait_for(lambda: connector(sim, "CP1", 1)["power"] < 0.5, 10,
                           "CP1/1 held at 0 kW on the simulator")

            code, out, err = await sems("status", "--socket", str(sock))
            assert code == 0, err
            line = next(ln for ln in out.splitlines() if ln.startswith("CP1#1"))
            assert line.endswith(f"held by the plan: 0.31 EUR/kWh now, 0.12 from "
                                 f"{cheap:%H:%M}; no target set"), out
            code, out, err = await sems("status", "--socket", str(sock), "--json")
            assert code == 0, err
            [c] = [c for c in json.loads(out)["connectors"] if c["session_id"]]
            assert c["held"]["reason"] == "price"
            # `sems sessions`: the short column.
            code, out, err = await sems("sessions", "--socket", str(sock))
            assert code == 0, err
            line = next(ln for ln in out.splitlines() if ln.startswith(c["session_id"][:8]))
            assert f"price until {cheap:%H:%M}" in line, out
            # The cloud: the same reason and figures on the connector in telemetry.
            def telemetry_held():
                for t in reversed(messages(cloud, "/telemetry")):
                    for x in t["connectors"]:
                        if (x["chargerId"], x["idx"]) == ("CP1", 1) and \
                                x.get("held", {}).get("reason") == "price":
                            return x["held"]
                return None

            th = await wait_for(telemetry_held, 10, "telemetry with held")
            assert th["priceThenEurKwh"] == h["price_then_eur_kwh"] and th["openEnded"]
            assert datetime.fromisoformat(th["until"]) == cheap
            assert await stop_agent(agent) == 0
        finally:
            await stop_agent(agent)
            if agent.returncode not in (0, None):
                print(log.read_text()[-4000:])
