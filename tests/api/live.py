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
from agent.model.clock import ManualClock, RealClock
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


class SteppedApi(LiveApi):
    """The API-only station on a real socket with no loop of its own: `step(n)` runs n control
    cycles and advances a manual clock by one period each, so a scenario's answers depend only
    on its requests (the comparison in tests/api/test_api_electra_answers.py needs that)."""

    def __init__(self, tmp: Path, config: dict[str, Any], period_s: float = 0.25) -> None:
        super().__init__(tmp, config, period_s)
        self.clock = ManualClock()

    async def _start(self) -> None:
        db = connect(self._db_path, check_same_thread=False)
        self.db = db
        self.station = ApiStation(self._config, db, self.clock, signals=Signals(db))
        self.server = ApiServer(create_app(self.station),
                                ApiServerSettings(socket_path=self.socket, tcp_port=0, token=TOKEN))
        await self.server.start()

    def step(self, n: int = 1) -> None:
        def run() -> None:
            for _ in range(n):
                self.station.cycle()
                self.clock.advance(self.period_s)
        self.call(run)

    def session_rows(self) -> list[dict[str, Any]]:
        """The store's session rows (status and source), oldest first."""
        return self.call(lambda: [dict(r) for r in self.db.query(
            "SELECT status, source, charger_id, connector_idx FROM sessions ORDER BY rowid")])

    def stop(self) -> None:
        self.http.close()
        asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
