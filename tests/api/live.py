"""A live local API for tests: the API-only station and its server on a real Unix socket
(and loopback TCP with a token), running in a background thread's event loop."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from agent.api import create_app
from agent.api.models import StationConfig
from agent.api.server import ApiServer, ApiServerSettings
from agent.app.api_station import ApiStation
from agent.model.clock import RealClock
from agent.store import connect
from agent.store.signals import Signals

TOKEN = "test-token-0123456789abcdef"


class LiveApi:
    def __init__(self, tmp: Path, config: dict[str, Any], period_s: float = 0.05) -> None:
        self.socket = tmp / "api.sock"
        self.period_s = period_s
        self._config = StationConfig.model_validate(config)
        self._db_path = tmp / "agent.db"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.station: ApiStation | None = None
        self.server: ApiServer | None = None

    def start(self) -> LiveApi:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        self.http = httpx.Client(transport=httpx.HTTPTransport(uds=str(self.socket)), base_url="http://sems",
                                 timeout=10)
        return self

    async def _start(self) -> None:
        db = connect(self._db_path, check_same_thread=False)
        self.station = ApiStation(self._config, db, RealClock(), signals=Signals(db))
        self.server = ApiServer(create_app(self.station),
                                ApiServerSettings(socket_path=self.socket, tcp_port=0, token=TOKEN))
        await self.server.start()
        self._stop = asyncio.Event()
        self._runner = asyncio.create_task(self.station.run(self.period_s, self._stop))

    def call(self, fn: Any) -> Any:
        """Run fn() on the station's loop (the station is single-threaded)."""
        async def go() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(go(), self._loop).result(timeout=10)

    def wait_cycles(self, n: int, timeout: float = 5.0) -> None:
        """Block until n more control cycles have completed (bounded)."""
        target = self.call(lambda: self.station.cycles) + n
        deadline = time.monotonic() + timeout
        while self.call(lambda: self.station.cycles) < target:
            assert time.monotonic() < deadline, "control loop stalled"
            time.sleep(self.period_s / 5)

    def stop(self) -> None:
        self.http.close()

        async def _stop() -> None:
            self._stop.set()
            await self._runner
            await self.server.stop()
        asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
