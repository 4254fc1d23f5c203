"""Local controller mode: each charger's connection relayed to the operator's CSMS.

The charger connects to the agent as in central system mode; the agent opens a connection
of the same protocol version to `<upstream>/<charge point id>`, logging in as that charge
point (security profile 1-3 from the charger's `upstream_*` files). Raw OCPP-J frames pass
through unchanged and in order both ways, so to the CSMS the charger looks directly
connected: the charger's calls are answered by the CSMS, the CSMS's calls by the charger.

The agent reads along (the same handlers as central system mode, their answers thrown away)
to know sessions, meter values and the CSMS's profiles, and makes its own calls to the
charger (its limits, at `relay_stack_level`, merged with the CSMS's: `merge`). Its call ids
are `sems-<random>`, never one the CSMS has outstanding at the charger, and a CSMS call
whose id equals an outstanding agent call waits until that call is answered, so every
answer finds its caller; the answers to the agent's calls never go upstream.

While the CSMS is unreachable the agent answers the charger itself (as the local central
system would, so the charger keeps charging under the agent's limits) and queues the
charger's calls. On reconnection they are replayed, transaction messages first (OCPP's
offline rule) and each class in its order, one at a time, before anything new is
forwarded; the CSMS's answers to replayed calls stay with the agent (the charger had its
answer). In 1.6 the CSMS gives transaction ids: a transaction started offline got the
agent's id, which the relay maps to the CSMS's in later messages both ways.
A charger call in flight when the CSMS drops is answered by the agent and queued again, so
the CSMS may see it twice (at least once beats never; OCPP CSMSs de-duplicate by
transaction id and message content). The queue survives charger reconnections.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import ssl
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ocpp.charge_point import ChargePoint as _LibraryChargePoint
from ocpp.routing import on
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from agent.config.secrets import read_secret, resolve
from agent.ocpp.link16 import Link16
from agent.ocpp.link201 import Link201
from agent.ocpp.merge import parse_set_profile

if TYPE_CHECKING:
    from agent.config.ocpp import OcppSettings
    from agent.ocpp.charger import OcppCharger

log = logging.getLogger(__name__)

SUBPROTOCOL = {"1.6": "ocpp1.6", "2.0.1": "ocpp2.0.1"}
RETRY_MAX_S = 30.0
COLLISION_POLL_S = 0.01


def is_transaction_message(version: str, action: str, payload: Any) -> bool:
    """OCPP's offline rules: these are queued and delivered before anything else."""
    if version == "1.6":
        return action in ("StartTransaction", "StopTransaction") or (
            action == "MeterValues" and isinstance(payload, dict)
            and payload.get("transactionId") is not None)
    return action == "TransactionEvent"


def _parse(raw: str | bytes) -> list | None:
    try:
        msg = json.loads(raw)
    except (ValueError, TypeError):
        return None
    if not isinstance(msg, list) or len(msg) < 3 or msg[0] not in (2, 3, 4):
        return None
    if msg[0] == 2 and (len(msg) < 4 or not isinstance(msg[2], str)):
        return None
    return msg


@dataclass(slots=True)
class _Queued:
    raw: str
    uid: str
    action: str
    payload: Any
    local_tx: int | None = None  # 1.6 StartTransaction answered by the agent: its id


@dataclass(slots=True)
class _Pending:
    """A charger call sent to the CSMS, waiting for its answer."""

    item: _Queued
    replay: bool
    answer: asyncio.Future[list] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass(slots=True)
class RelayStats:
    to_csms: int = 0
    from_csms: int = 0
    queued: int = 0
    replayed: int = 0
    answered_locally: int = 0
    dropped_answers: int = 0  # charger answers to CSMS calls of a connection that is gone
    outages: int = 0


class _RelayMixin:
    """What both versions' relay links add: the agent's answers only when the relay says so
    (`_send` goes through the relay), no traffic records of their own (the relay keeps the
    log of what really crossed), and the agent's call ids from the relay."""

    relay: Relay
    forwarding: bool = False  # the call being routed is forwarded: the CSMS answers it

    async def route_message(self, raw_msg: str) -> None:
        await _LibraryChargePoint.route_message(self, raw_msg)  # the library's, untraced

    async def _send(self, message: str) -> None:
        await self.relay.from_agent(message)


class RelayLink16(_RelayMixin, Link16):
    @on(Action.start_transaction)
    def on_start(self, connector_id: int, id_tag: str, meter_start: int, timestamp: str,
                 **kw: Any):
        if self.forwarding:
            # The CSMS gives the transaction id: the relay starts the session on its answer.
            return result16.StartTransaction(transaction_id=0, id_tag_info={"status": "Accepted"})
        answer = Link16.on_start(self, connector_id, id_tag, meter_start, timestamp, **kw)
        self.relay.local_tx_started(answer.transaction_id)
        return answer


class RelayLink201(_RelayMixin, Link201):
    pass


class Relay:
    """One charger's relay to the CSMS; lives as long as the agent (its queue and 1.6
    transaction id map survive the charger's reconnections). `serve()` runs one connection."""

    def __init__(self, charger: OcppCharger, settings: OcppSettings) -> None:
        assert settings.upstream is not None
        self.charger = charger
        self.s = settings
        self.cp_id = charger.cfg.charge_point_id
        self.url = settings.upstream.rstrip("/") + "/" + self.cp_id
        self.stats = RelayStats()
        self.queue_tx: deque[_Queued] = deque()
        self.queue_other: deque[_Queued] = deque()
        self.tx_map: dict[str, int] = {}  # 1.6: the agent's transaction id -> the CSMS's
        self.connected_upstream = False
        self._gen = 0  # one per charger connection: a replaced connection's tasks stand down
        self._reset()

    def _reset(self) -> None:
        self.version = ""
        self.link: Any = None
        self.ws: Any = None
        self.up: ClientConnection | None = None
        self.forwarding = False  # CSMS connected and the queue replayed
        self.pending_up: dict[str, _Pending] = {}
        self.csms_calls: dict[str, tuple[str, Any]] = {}  # CSMS calls the charger has not answered
        self.agent_calls: dict[str, float] = {}  # the agent's calls the charger has not answered
        self.local_answers: set[str] = set()
        self._last_local_tx: int | None = None

    # ---- one charger connection ---------------------------------------------------------
    def make_link(self, ws: Any, version: str) -> Any:
        self._reset()
        self._gen += 1
        self.ws, self.version = ws, version
        cls = RelayLink16 if version == "1.6" else RelayLink201
        link = cls(self.cp_id, _ToCharger(ws), self.charger, self.charger.traffic,
                   self.s.call_timeout_s)
        link.relay = self
        link._unique_id_generator = self._agent_call_id
        self.link = link
        return link

    async def serve(self) -> None:
        """Until the charger's connection closes (which closes the upstream one too: the CSMS
        sees the charger go, as it would directly)."""
        gen, ws = self._gen, self.ws
        upstream = asyncio.get_running_loop().create_task(self._upstream_loop(gen))
        try:
            # The charger's first frames (its BootNotification) wait briefly for the CSMS, whose
            # answer (Accepted / Pending / Rejected) is the one that counts.
            for _ in range(int(self.s.call_timeout_s / 2 / COLLISION_POLL_S)):
                if self.forwarding or upstream.done():
                    break
                await asyncio.sleep(COLLISION_POLL_S)
            async for raw in ws:
                if self._gen != gen:
                    break  # replaced by the charger's newer connection
                await self._from_charger(raw if isinstance(raw, str) else raw.decode())
        finally:
            upstream.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await upstream
            if self._gen == gen:
                self._upstream_lost()
                self.ws = None

    # ---- charger -> agent ---------------------------------------------------------------
    async def _from_charger(self, raw: str) -> None:
        t = self.charger.traffic
        t.record("in", raw)
        msg = _parse(raw)
        if msg is None:
            log.warning("OCPP relay %s: malformed frame from the charger passed on: %.200s",
                        self.cp_id, raw)
            if not await self._to_csms(raw):
                self._enqueue(_Queued(raw, "", "?", None))
            return
        uid = str(msg[1])
        if msg[0] == 2:
            t.calls_in += 1
            item = _Queued(raw, uid, msg[2], msg[3])
            if self.forwarding:
                pending = _Pending(item, replay=False)
                self.pending_up[uid] = pending
                if await self._to_csms(self._map_up(item)):
                    await self._observe(raw, forwarded=True)
                    return
                self.pending_up.pop(uid, None)
            await self._answer_locally(item)
            return
        if uid in self.agent_calls:
            del self.agent_calls[uid]
            await self.link.route_message(raw)  # to the agent's waiting call; never upstream
            return
        call = self.csms_calls.pop(uid, None)
        if call is not None and msg[0] == 3 and isinstance(msg[2], dict):
            self._charger_answered(call[0], call[1], msg[2])
        if not await self._to_csms(raw):
            self.stats.dropped_answers += 1
            log.warning("OCPP relay %s: the charger's answer %s found no CSMS to go to",
                        self.cp_id, uid)

    async def _observe(self, raw: str, *, forwarded: bool) -> None:
        self.link.forwarding = forwarded
        try:
            await self.link.route_message(raw)
        finally:
            self.link.forwarding = False

    async def _answer_locally(self, item: _Queued, *, enqueue: bool = True) -> None:
        self.stats.answered_locally += 1
        self.local_answers.add(item.uid)
        self._last_local_tx = None
        if enqueue:
            self._enqueue(item)
        await self._observe(item.raw, forwarded=False)
        if item.action == "StartTransaction":
            item.local_tx = self._last_local_tx

    def local_tx_started(self, tx_id: int) -> None:
        self._last_local_tx = tx_id

    def _enqueue(self, item: _Queued) -> None:
        self.stats.queued += 1
        tx = is_transaction_message(self.version, item.action, item.payload)
        (self.queue_tx if tx else self.queue_other).append(item)
        if len(self.queue_tx) + len(self.queue_other) > self.s.relay_queue_max:
            victim = self.queue_other or self.queue_tx
            dropped = victim.popleft()
            log.error("OCPP relay %s: queue full, oldest %s dropped", self.cp_id, dropped.action)

    # ---- agent -> charger ---------------------------------------------------------------
    async def from_agent(self, raw: str) -> None:
        """What the relay link sends: the agent's own calls go to the charger; its answers
        only to calls the agent answers itself (CSMS unreachable)."""
        msg = _parse(raw)
        if msg is None:
            return
        uid = str(msg[1])
        if msg[0] == 2:
            self.agent_calls[uid] = time.monotonic()
            await self._to_charger(raw)
        elif uid in self.local_answers:
            self.local_answers.discard(uid)
            await self._to_charger(raw)
        # else: the agent's reading-along answer to a forwarded call: the CSMS answers it

    def _agent_call_id(self) -> str:
        while True:
            uid = f"sems-{uuid.uuid4().hex[:20]}"
            if uid not in self.csms_calls:
                return uid

    async def _to_charger(self, raw: str) -> None:
        self.charger.traffic.record("out", raw)
        if self.ws is not None:
            await self.ws.send(raw)

    # ---- CSMS -> charger ----------------------------------------------------------------
    async def _upstream_loop(self, gen: int) -> None:
        backoff = 0.2
        while self._gen == gen:
            try:
                headers, ctx = self._login()
                async with connect(self.url, subprotocols=[SUBPROTOCOL[self.version]],  # type: ignore[list-item]
                                   additional_headers=headers, ssl=ctx, open_timeout=10,
                                   ping_interval=20, ping_timeout=20) as up:
                    if self._gen != gen:
                        return
                    self.up, self.connected_upstream, backoff = up, True, 0.2
                    log.info("OCPP relay %s: connected to %s", self.cp_id, self.url)
                    reader = asyncio.get_running_loop().create_task(self._from_csms(up))
                    try:
                        await self._replay()
                        await reader
                    finally:
                        reader.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await reader
            except asyncio.CancelledError:
                raise
            except ValueError as exc:  # our own log-in secret refused: say so, loudly
                log.warning("OCPP relay %s: not connecting to the CSMS: %s", self.cp_id, exc)
            except Exception as exc:
                log.info("OCPP relay %s: CSMS unreachable: %s", self.cp_id, exc)
            self._upstream_lost()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RETRY_MAX_S)

    def _login(self) -> tuple[dict[str, str], ssl.SSLContext | None]:
        """Security profile 1 (basic auth), 2 (+ TLS), 3 (TLS client certificate)."""
        cfg = self.charger.cfg
        headers = {}
        if cfg.upstream_password_file is not None:
            pw = read_secret(cfg.upstream_password_file, f"{self.cp_id}.upstream_password_file")
            token = base64.b64encode(f"{self.cp_id}:{pw}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        if not self.url.startswith("wss://"):
            return headers, None
        ca = str(resolve(cfg.upstream_ca_file)) if cfg.upstream_ca_file else None
        ctx = ssl.create_default_context(cafile=ca)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if cfg.upstream_cert_file is not None and cfg.upstream_key_file is not None:
            ctx.load_cert_chain(str(cfg.upstream_cert_file), str(resolve(cfg.upstream_key_file)))
        return headers, ctx

    def _upstream_lost(self) -> None:
        if self.up is None:
            return
        self.up, self.forwarding, self.connected_upstream = None, False, False
        self.stats.outages += 1
        self.csms_calls.clear()
        waiting = [p for p in self.pending_up.values() if not p.replay]
        for p in self.pending_up.values():
            if not p.answer.done():
                p.answer.cancel()
        self.pending_up.clear()
        for p in waiting:  # queued now, ahead of anything the charger sends from here on
            self._enqueue(p.item)
        if waiting and self.ws is not None:
            # The charger waits for these: the agent answers, and sends them again later.
            asyncio.get_running_loop().create_task(self._answer_all(waiting))

    async def _answer_all(self, waiting: list[_Pending]) -> None:
        for p in waiting:
            with contextlib.suppress(Exception):
                await self._answer_locally(p.item, enqueue=False)

    async def _replay(self) -> None:
        while self.queue_tx or self.queue_other:
            queue = self.queue_tx or self.queue_other
            item = queue[0]
            pending = _Pending(item, replay=True)
            self.pending_up[item.uid] = pending
            if not await self._to_csms(self._map_up(item)):
                return
            try:
                answer = await asyncio.wait_for(pending.answer, self.s.call_timeout_s * 2)
            except (TimeoutError, asyncio.CancelledError):
                if self.up is not None:
                    await self.up.close()  # no answer: start over on a fresh connection
                return
            if queue and queue[0] is item:
                queue.popleft()
            self.stats.replayed += 1
            if answer[0] == 4:
                log.warning("OCPP relay %s: CSMS refused replayed %s: %s", self.cp_id,
                            item.action, answer[2:])
        self.forwarding = True  # no await since the queues were seen empty: nothing overtakes

    async def _to_csms(self, raw: str) -> bool:
        up = self.up
        if up is None:
            return False
        try:
            await up.send(raw)
        except ConnectionClosed:
            return False
        self.stats.to_csms += 1
        self.charger.traffic.record("to_csms", raw)
        return True

    async def _from_csms(self, up: ClientConnection) -> None:
        async for frame in up:
            raw = frame if isinstance(frame, str) else frame.decode()
            self.stats.from_csms += 1
            self.charger.traffic.record("from_csms", raw)
            msg = _parse(raw)
            if msg is None:
                await self._to_charger(raw)
                continue
            uid = str(msg[1])
            if msg[0] == 2:
                await self._no_collision(uid)
                payload = self._map_down(msg[2], msg[3])
                self.csms_calls[uid] = (msg[2], payload)
                out = raw if payload is msg[3] else json.dumps([2, msg[1], msg[2], payload])
                await self._to_charger(out)
                continue
            pending = self.pending_up.pop(uid, None)
            if pending is None:
                await self._to_charger(raw)  # an answer to nothing we sent: the charger's call
                continue
            self._csms_answered(pending, msg)
            if pending.replay:
                if not pending.answer.done():
                    pending.answer.set_result(msg)
            else:
                await self._to_charger(raw)

    async def _no_collision(self, uid: str) -> None:
        """A CSMS call with the id of an agent call still open at the charger waits for it
        (or its timeout), so the charger's answer cannot be routed to the wrong caller."""
        while uid in self.agent_calls:
            if time.monotonic() - self.agent_calls[uid] > self.s.call_timeout_s:
                del self.agent_calls[uid]
                break
            await asyncio.sleep(COLLISION_POLL_S)

    # ---- reading along ------------------------------------------------------------------
    def _csms_answered(self, pending: _Pending, msg: list) -> None:
        item = pending.item
        if self.version != "1.6" or item.action != "StartTransaction" or msg[0] != 3:
            return
        result = msg[2] if isinstance(msg[2], dict) else {}
        tx = result.get("transactionId")
        if not isinstance(tx, int):
            return
        if pending.replay:
            if item.local_tx is not None:
                self.tx_map[str(item.local_tx)] = tx
            return
        status = (result.get("idTagInfo") or {}).get("status")
        p = item.payload if isinstance(item.payload, dict) else {}
        idx = p.get("connectorId")
        if status == "Accepted" and isinstance(idx, int):
            start = p.get("meterStart")
            self.charger.on_tx_started(idx, tx, start / 1000.0 if isinstance(
                start, int | float) else None, p.get("idTag"))
            self.charger.profile_due(idx)

    def _charger_answered(self, action: str, payload: Any, result: dict) -> None:
        if result.get("status") != "Accepted" or not isinstance(payload, dict):
            return
        if action == "SetChargingProfile":
            profile = parse_set_profile(self.version, payload)
            if profile is not None:
                self.charger.csms.add(profile)
                self.charger.csms_changed()
        elif action == "ClearChargingProfile":
            self.charger.csms.clear(payload)
            self.charger.csms_changed()

    def _map_up(self, item: _Queued) -> str:
        """1.6: the agent's transaction ids (given while the CSMS was away) as the CSMS's."""
        p = item.payload
        if self.version != "1.6" or not self.tx_map or not isinstance(p, dict):
            return item.raw
        local = p.get("transactionId")
        if local is None or str(local) not in self.tx_map:
            return item.raw
        return json.dumps([2, item.uid, item.action, {**p, "transactionId": self.tx_map[str(local)]}])

    def _map_down(self, action: str, payload: Any) -> Any:
        """1.6: the CSMS's transaction ids back to the agent's, which the charger knows."""
        if self.version != "1.6" or not self.tx_map or not isinstance(payload, dict):
            return payload
        back = {v: int(k) for k, v in self.tx_map.items()}
        if action == "RemoteStopTransaction" and payload.get("transactionId") in back:
            return {**payload, "transactionId": back[payload["transactionId"]]}
        prof = payload.get("csChargingProfiles")
        if action == "SetChargingProfile" and isinstance(prof, dict) and \
                prof.get("transactionId") in back:
            return {**payload, "csChargingProfiles": {
                **prof, "transactionId": back[prof["transactionId"]]}}
        return payload

    def describe(self) -> dict[str, Any]:
        s = self.stats
        return {"url": self.url, "connected": self.connected_upstream,
                "forwarding": self.forwarding,
                "queued": len(self.queue_tx) + len(self.queue_other),
                "toCsms": s.to_csms, "fromCsms": s.from_csms, "answeredLocally":
                s.answered_locally, "replayed": s.replayed, "outages": s.outages,
                "droppedAnswers": s.dropped_answers}


class _ToCharger:
    """The relay link's `connection`: sends go through the relay (`_RelayMixin._send`);
    closing it closes that charger connection, whose end closes the upstream one."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
