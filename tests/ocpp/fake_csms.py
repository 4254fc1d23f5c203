"""A fake operator CSMS for local controller mode tests, built with the `ocpp` library: it
answers what a charge point sends (1.6J and 2.0.1), gives 1.6 transaction ids, can call the
charge point, and records every frame it saw per charge point id, across reconnections and
its own outages (`stop()` / `start()` on the same port)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint as Cp16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as r16
from ocpp.v201 import ChargePoint as Cp201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as r201
from websockets.asyncio.server import Server, serve


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class _Recorder:
    csms: FakeCsms

    async def route_message(self, raw_msg: str) -> None:
        self.csms.received.setdefault(self.id, []).append(raw_msg)  # type: ignore[attr-defined]
        await super().route_message(raw_msg)  # type: ignore[misc]

    async def _send(self, message: str) -> None:
        self.csms.sent.setdefault(self.id, []).append(message)  # type: ignore[attr-defined]
        await super()._send(message)  # type: ignore[misc]


class Csms16(_Recorder, Cp16):
    @on("BootNotification")
    def on_boot(self, **_: Any):
        return r16.BootNotification(current_time=_now(), interval=300, status="Accepted")

    @on("Heartbeat")
    def on_heartbeat(self):
        return r16.Heartbeat(current_time=_now())

    @on("StatusNotification")
    def on_status(self, **_: Any):
        return r16.StatusNotification()

    @on("MeterValues")
    def on_meter(self, **_: Any):
        return r16.MeterValues()

    @on("Authorize")
    def on_authorize(self, id_tag: str):
        return r16.Authorize(id_tag_info={"status": "Accepted"})

    @on("StartTransaction")
    def on_start(self, **_: Any):
        return r16.StartTransaction(transaction_id=next(self.csms.tx_ids),
                                    id_tag_info={"status": "Accepted"})

    @on("StopTransaction")
    def on_stop(self, **_: Any):
        return r16.StopTransaction()


class Csms201(_Recorder, Cp201):
    @on("BootNotification")
    def on_boot(self, **_: Any):
        return r201.BootNotification(current_time=_now(), interval=300, status="Accepted")

    @on("Heartbeat")
    def on_heartbeat(self):
        return r201.Heartbeat(current_time=_now())

    @on("StatusNotification")
    def on_status(self, **_: Any):
        return r201.StatusNotification()

    @on("MeterValues")
    def on_meter(self, **_: Any):
        return r201.MeterValues()

    @on("Authorize")
    def on_authorize(self, **_: Any):
        return r201.Authorize(id_token_info={"status": "Accepted"})

    @on("TransactionEvent")
    def on_tx_event(self, **kw: Any):
        return r201.TransactionEvent(
            id_token_info={"status": "Accepted"} if kw.get("id_token") else None)

    @on("NotifyEVChargingNeeds")
    def on_needs(self, **_: Any):
        return r201.NotifyEVChargingNeeds(status="Accepted")


class FakeCsms:
    def __init__(self, password: str | None = None, ssl_context: Any = None) -> None:
        self.password = password
        self.ssl = ssl_context
        self.port = 0
        self.received: dict[str, list[str]] = {}
        self.sent: dict[str, list[str]] = {}
        self.cps: dict[str, Any] = {}
        self.auth_failures = 0
        self.tx_ids = itertools.count(9001)
        self._server: Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def url(self) -> str:
        return f"{'wss' if self.ssl else 'ws'}://127.0.0.1:{self.port}/ocpp"

    async def start(self) -> None:
        self._server = await serve(self._handle, "127.0.0.1", self.port, ssl=self.ssl,
                                   subprotocols=["ocpp1.6", "ocpp2.0.1"],  # type: ignore[list-item]
                                   process_request=self._check)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """An outage: the listener and every connection go."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.cps.clear()

    def _check(self, connection: Any, request: Any) -> Any:
        if self.password is None:
            return None
        cp_id = request.path.rsplit("/", 1)[-1]
        token = base64.b64encode(f"{cp_id}:{self.password}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {token}":
            self.auth_failures += 1
            return connection.respond(HTTPStatus.UNAUTHORIZED, "no\n")
        return None

    async def _handle(self, ws: Any) -> None:
        cp_id = ws.request.path.rsplit("/", 1)[-1]
        cls = Csms16 if ws.subprotocol == "ocpp1.6" else Csms201
        cp = cls(cp_id, ws, response_timeout=10)
        cp.csms = self
        self.cps[cp_id] = cp
        with contextlib.suppress(Exception):  # the connection closed
            await cp.start()

    # ---- what the tests read --------------------------------------------------------------
    def calls(self, cp_id: str) -> list[tuple[str, str, Any]]:
        """(id, action, payload) of every call the charge point made, as received."""
        out = []
        for raw in self.received.get(cp_id, []):
            msg = json.loads(raw)
            if msg[0] == 2:
                out.append((msg[1], msg[2], msg[3]))
        return out

    def answers(self, cp_id: str) -> list[str]:
        """Ids of the answers (CallResult / CallError) it received."""
        return [json.loads(r)[1] for r in self.received.get(cp_id, []) if json.loads(r)[0] != 2]


def csms_profile(version: str, tx_id: str, watts: float, profile_id: int = 7) -> object:
    """The CSMS's TxProfile for transaction `tx_id` on connector/EVSE 1: `watts` from now on."""
    period = [{"start_period": 0, "limit": watts}]
    if version == "1.6":
        return call16.SetChargingProfile(connector_id=1, cs_charging_profiles={
            "charging_profile_id": profile_id, "stack_level": 1, "transaction_id": int(tx_id),
            "charging_profile_purpose": "TxProfile", "charging_profile_kind": "Relative",
            "charging_schedule": {"charging_rate_unit": "W",
                                  "charging_schedule_period": period}})
    return call201.SetChargingProfile(evse_id=1, charging_profile={
        "id": profile_id, "stack_level": 1, "transaction_id": tx_id,
        "charging_profile_purpose": "TxProfile", "charging_profile_kind": "Relative",
        "charging_schedule": [{"id": profile_id, "charging_rate_unit": "W",
                               "charging_schedule_period": period}]})


@contextlib.asynccontextmanager
async def csms_with_password(tmp_path: Any, password: str = "csms-secret") -> Any:
    """A started FakeCsms asking basic auth, and the agent's password file for it (mode 0600:
    a group-readable secret is refused, agent/config/secrets.py); stopped on exit."""
    csms = FakeCsms(password=password)
    await csms.start()
    pw = tmp_path / "upstream-password"
    pw.write_text(password + "\n")
    pw.chmod(0o600)
    try:
        yield csms, pw
    finally:
        await csms.stop()
