"""The daemon as a process against the simulator: sd_notify order, SIGKILL -> the chargers
fall back within their timeout, restart -> the same sessions continue, SIGTERM -> exit 0."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import sys
import time

import pytest
from hardware_sim.simulator import Simulator
from sim_agent import STATION

pytestmark = pytest.mark.timeout(90)

COMM_TIMEOUT_S = 2


def write_config(path, endpoints, db_path) -> None:
    lines = [
        "[station]", 'id = "SIM1"', "grid_capacity_kw = 60.0", 'grid_meter = "meter"',
        "pessimistic_base_load_kw = 15.0",
    ]  # fmt: skip
    for cid, ep in endpoints["chargers"].items():
        lines += ["[[station.chargers]]", f'id = "{cid}"', f'device = "{cid}"',
                  f"max_power_kw = {ep['maxPower']}", f"connectors = {ep['connectors']}"]  # fmt: skip
    devices = [("meter", "meter", endpoints["meter"])]
    devices += [(cid, "charger", ep) for cid, ep in endpoints["chargers"].items()]
    for name, kind, ep in devices:
        lines += ["[[devices]]", f'name = "{name}"', f'kind = "{kind}"',
                  f'profile = "{ep["profile"]}"', f'endpoint = "tcp://{ep["tcp"]}"',
                  f"unit_id = {ep['unit']}"]  # fmt: skip
    lines += ["[control]", "period_s = 0.1", "stale_after_s = 0.5",
              f"comm_timeout_s = {COMM_TIMEOUT_S}", "[storage]", f'db_path = "{db_path}"']  # fmt: skip
    path.write_text("\n".join(lines) + "\n")


def connector(sim, cid, idx):
    return next(c for c in sim.state()["connectors"] if c["chargerId"] == cid and c["idx"] == idx)


async def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def active_sessions(db_path):
    if not db_path.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
            rows = conn.execute(
                "SELECT charger_id || '/' || connector_idx, id FROM sessions WHERE status='active'"
            ).fetchall()
    except sqlite3.OperationalError:  # the agent is still creating its schema
        return {}
    return dict(rows)


def test_notify_sigkill_fallback_restart_resume(tmp_path):
    asyncio.run(_scenario(tmp_path))


async def _scenario(tmp_path):
    notify_path = str(tmp_path / "notify.sock")
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(notify_path)
    rx.setblocking(False)
    messages: list[str] = []

    def drain() -> list[str]:
        while True:
            try:
                messages.append(rx.recv(4096).decode())
            except BlockingIOError:
                return messages

    env = dict(os.environ, NOTIFY_SOCKET=notify_path, WATCHDOG_USEC="1000000")
    config = tmp_path / "agent.toml"
    db_path = tmp_path / "agent.db"
    code = "import sys; from agent.app.daemon import main; sys.exit(main(sys.argv[1]))"

    async def start_agent():
        return await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, str(config), env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip

    async with Simulator(STATION, rtu_meter=False) as sim:
        write_config(config, sim.endpoints, db_path)
        sim.plug("CP1", 1, max_kw=50, capacity_kwh=80, soc=0.2, energy_needed_kwh=60)
        sim.plug("CP2", 1, max_kw=22, capacity_kwh=60, soc=0.2, energy_needed_kwh=40)
        agent = await start_agent()
        try:
            await wait_for(lambda: connector(sim, "CP1", 1)["power"] > 5, 20, "CP1 charging")
            assert agent.returncode is None
            await wait_for(lambda: len(active_sessions(db_path)) == 2, 20, "2 sessions")
            before = active_sessions(db_path)
            await asyncio.sleep(1.5)  # watchdog pings (every 0.25 s at WATCHDOG_USEC=1 s)
            assert drain()[0].startswith("READY=1\nSTATUS=")
            assert "WATCHDOG=1" in messages
            assert sim.state()["chargers"]["CP1"]["commTimeout"] == COMM_TIMEOUT_S

            agent.send_signal(signal.SIGKILL)
            await agent.wait()
            killed = time.monotonic()
            await wait_for(
                lambda: all(c["timedOut"] for c in sim.state()["chargers"].values()),
                COMM_TIMEOUT_S + 1.5, "chargers falling back",
            )  # fmt: skip
            assert time.monotonic() - killed <= COMM_TIMEOUT_S + 1.5
            # Fallbacks: (60 - 15) kW shared by rated power, per connector.
            assert connector(sim, "CP1", 1)["limit"] == pytest.approx(45 * 50 / 72 / 2, abs=0.01)
            assert connector(sim, "CP2", 1)["limit"] == pytest.approx(45 * 22 / 72, abs=0.01)

            messages.clear()
            agent = await start_agent()
            await wait_for(lambda: any(m.startswith("READY=1") for m in drain()), 20, "READY")
            await wait_for(lambda: not sim.state()["chargers"]["CP1"]["timedOut"], 5, "resume")
            await asyncio.sleep(0.5)
            assert active_sessions(db_path) == before  # same ids, continued

            agent.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(agent.wait(), 10) == 0
            drain()
            assert messages[0].startswith("READY=1")
            assert messages[-1].startswith("STOPPING=1")
            # SIGTERM left every connector at most at its fallback share
            assert connector(sim, "CP1", 1)["commandedLimit"] <= 45 * 50 / 72 / 2 + 0.01
        finally:
            if agent.returncode is None:
                agent.kill()
                await agent.wait()
            rx.close()
