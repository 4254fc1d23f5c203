"""Helpers for the end-to-end tests: a real `sems run` process over a real simulator and a
real Mosquitto, watched from the cloud side (MQTT) and through the daemon's API socket."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

STATION = {
    "stationId": "E2E1",
    "gridCapacity": 60.0,
    "chargers": [
        {"id": "CP1", "maxPower": 50.0, "connectors": 2, "kind": "dc"},
        {"id": "CP2", "maxPower": 22.0, "connectors": 1, "kind": "ac"},
    ],
}
REPO = Path(__file__).resolve().parents[2]


def write_config(path: Path, endpoints: dict[str, Any], tmp: Path, broker_port: int,
                 *, telemetry_s: float = 1.0, health_s: float = 3.0) -> Path:
    """A complete agent TOML for the simulator's devices, the broker and an API socket."""
    lines = ['[station]', 'id = "E2E1"', 'grid_capacity_kw = 60.0', 'grid_meter = "meter"',
             'pessimistic_base_load_kw = 15.0']
    for cid, ep in endpoints["chargers"].items():
        lines += ["[[station.chargers]]", f'id = "{cid}"', f'device = "{cid}"',
                  f"max_power_kw = {ep['maxPower']}", f"connectors = {ep['connectors']}"]
    devices = [("meter", "meter", endpoints["meter"])]
    devices += [(cid, "charger", ep) for cid, ep in endpoints["chargers"].items()]
    for name, kind, ep in devices:
        lines += ["[[devices]]", f'name = "{name}"', f'kind = "{kind}"',
                  f'profile = "{ep["profile"]}"', f'endpoint = "tcp://{ep["tcp"]}"',
                  f"unit_id = {ep['unit']}"]
    lines += ["[control]", "period_s = 0.1", "stale_after_s = 0.5", "comm_timeout_s = 3",
              "[planner]", "enabled = false",
              "[mqtt]", 'host = "127.0.0.1"', f"port = {broker_port}", "keepalive_s = 3",
              "backoff_initial_s = 0.1", "backoff_max_s = 0.5",
              f"telemetry_interval_s = {telemetry_s}", f"health_interval_s = {health_s}",
              "[api]", f'socket_path = "{tmp / "api.sock"}"',
              "[storage]", f'db_path = "{tmp / "agent.db"}"']
    path.write_text("\n".join(lines) + "\n")
    return path


def agent_env() -> dict[str, str]:
    return dict(os.environ, NUMBA_CACHE_DIR=os.environ.get("NUMBA_CACHE_DIR",
                                                           str(REPO / ".numba-cache")))


async def start_agent(config: Path, log: Path) -> asyncio.subprocess.Process:
    """`sems run --config FILE` (stderr to `log`, appended across restarts)."""
    with log.open("ab") as err:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent.cli", "run", "--config", str(config),
            env=agent_env(), stdout=asyncio.subprocess.DEVNULL, stderr=err,
        )


async def stop_agent(proc: asyncio.subprocess.Process, timeout: float = 15.0) -> int:
    if proc.returncode is None:
        proc.terminate()
        try:
            return await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode


async def wait_for(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def api(socket_path: Path) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(socket_path)),
                             base_url="http://sems", timeout=5.0)


def messages(collector: Any, topic_suffix: str) -> list[dict[str, Any]]:
    return [json.loads(r.payload) for r in collector.got if r.topic.endswith(topic_suffix)]


def connector(sim: Any, cid: str, idx: int) -> dict[str, Any]:
    return next(c for c in sim.state()["connectors"] if c["chargerId"] == cid and c["idx"] == idx)
