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
import sim_agent

STATION = {**sim_agent.STATION, "stationId": "E2E1"}
REPO = Path(__file__).resolve().parents[2]


def write_config(path: Path, endpoints: dict[str, Any], tmp: Path, broker_port: int,
                 *, telemetry_s: float = 1.0, health_s: float = 3.0) -> Path:
    """A complete agent TOML for the simulator's devices, the broker and an API socket
    (`tmp`/api.sock), with the store at `tmp`/agent.db."""
    config = sim_agent.agent_config(
        endpoints, tmp / "agent.db", station_id="E2E1", mqtt_port=broker_port,
        extra={"mqtt": {"telemetry_interval_s": telemetry_s, "health_interval_s": health_s}},
    )
    return sim_agent.write_config(config, path)


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
