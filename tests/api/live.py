"""A live local API for tests: the station with API chargers (`VirtualStation`: virtual
chargers under the daemon's controller) and its server on a real Unix socket (and loopback
TCP with a token), running in a background thread's event loop."""

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
from agent.app.virtual_station import VirtualStation
from agent.model.clock import ManualClock, RealClock
from agent.store import connect
from agent.store.signals import Signals

TOKEN = "test-token-0123456789abcdef"
# Bounds on waits for the station's thread, there to end a hang, never to time anything: a
# fresh clone's first start compiles the allocator's kernels (4.7 s on a quiet machine) and
# a start bounded at 10 s timed out under a loaded CI run (2026-12-07).
WAIT_S = 120.0


class LiveApi:
    def __init__(self, tmp: Path, config: dict[str, Any], period_s: float = 0.05) -> None:
        self.socket = tmp / "api.sock"
        self.period_s = period_s
        self._config = StationConfig.model_validate(config)
        self._db_path = tmp / "agent.db"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.station: VirtualStation | None = None
        self.server: ApiServer | None = None

    def start(self) -> LiveApi:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=WAIT_S)
        self.http = httpx.Client(transport=httpx.HTTPTransport(uds=str(self.socket)), base_url="http://sems",
                                 timeout=WAIT_S)
        return self

    async def _start(self) -> None:
        db = connect(self._db_path, check_same_thread=False)
        self.station = VirtualStation(self._config, db, RealClock(), signals=Signals(db))
        self.server = ApiServer(create_app(self.station),
                                ApiServerSettings(socket_path=self.socket, tcp_port=0, token=TOKEN))
        await self.server.start()
        self._stop = asyncio.Event()
        self._runner = asyncio.create_task(self.station.run(self.period_s, self._stop))

    def call(self, fn: Any) -> Any:
        """Run fn() on the station's loop (the station is single-threaded)."""
        async def go() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(go(), self._loop).result(timeout=WAIT_S)

    def wait_cycles(self, n: int, timeout: float = WAIT_S) -> None:
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
        asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(timeout=WAIT_S)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=WAIT_S)


def virtual_station(config: StationConfig, db: Any, clock: Any, signals: Signals,
                    on_event: Any = None) -> VirtualStation:
    """The station as `SteppedApi` builds it by default."""
    return VirtualStation(config, db, clock, signals=signals, on_event=on_event)


class SteppedApi(LiveApi):
    """The station with API chargers on a real socket with no loop of its own: `step(n)` runs n control
    cycles and advances a manual clock by one period each, so a scenario's answers depend only
    on its requests (the comparison in tests/api/test_api_electra_answers.py needs that).

    `make(config, db, clock, signals, on_event)` builds the station behind the API: the seam
    where the comparison puts each implementation (its `cycle()` is one control step). Every
    session event its hook is handed is kept in `events`; `restart()` is a SIGKILL and a new
    station (and server) on the same store file."""

    def __init__(self, tmp: Path, config: dict[str, Any], period_s: float = 0.25,
                 make: Any = virtual_station) -> None:
        super().__init__(tmp, config, period_s)
        self.clock = ManualClock()
        self.make = make
        self.events: list[dict[str, Any]] = []

    def _hook(self, kind: str, payload: dict[str, Any]) -> None:
        self.events.append({"kind": kind, "id": payload["id"], "reason": payload.get("reason"),
                            "charger": payload["charger_id"], "idx": payload["connector_idx"]})

    async def _start(self) -> None:
        db = connect(self._db_path, check_same_thread=False)
        self.db = db
        self.station = self.make(self._config, db, self.clock, Signals(db), self._hook)
        self.server = ApiServer(create_app(self.station),
                                ApiServerSettings(socket_path=self.socket, tcp_port=0, token=TOKEN))
        await self.server.start()

    def step(self, n: int = 1) -> None:
        async def run() -> None:
            for _ in range(n):
                await self.station.cycle()
                self.clock.advance(self.period_s)
        asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=WAIT_S)

    def advance(self, seconds: float) -> None:
        """Time passes without a control cycle (the integration and the agent both quiet)."""
        self.call(lambda: self.clock.advance(seconds))

    def restart(self, config: dict[str, Any] | None = None) -> None:
        """As a SIGKILL and a new start: nothing flushed, the server and station replaced by
        new ones on the same store file, with `config` (else the one the station started
        with)."""
        if config is not None:
            self._config = StationConfig.model_validate(config)

        async def again() -> None:
            await self.server.stop()
            await self._start()
        asyncio.run_coroutine_threadsafe(again(), self._loop).result(timeout=WAIT_S)

    def session_rows(self) -> list[dict[str, Any]]:
        """The store's session rows (status and source), oldest first."""
        return self.call(lambda: [dict(r) for r in self.db.query(
            "SELECT status, source, charger_id, connector_idx FROM sessions ORDER BY rowid")])

    def stored_sessions(self) -> list[dict[str, Any]]:
        """Every column of the store's session rows that the station decides, oldest first."""
        return self.call(lambda: [dict(r) for r in self.db.query(
            "SELECT id, status, source, kind, charger_id, connector_idx, started_at, stopped_at,"
            " stop_reason, round(energy_kwh, 6) AS energy_kwh, peak_kw, vehicle_max_kw,"
            " vehicle_id, fleet_id, limit_kw FROM sessions ORDER BY rowid")])

    def stop(self) -> None:
        self.http.close()
        asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(timeout=WAIT_S)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=WAIT_S)
