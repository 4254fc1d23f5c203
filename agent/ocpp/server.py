"""The central system's WebSocket listener: `ws(s)://<host>:<port><path>/<id>`.

The handshake is where strangers are turned away: an id that is neither a configured
charger nor in `[ocpp] allow` gets 404, a charger with a password (security profile 1/2)
that sends no or wrong basic auth gets 401, and a client offering neither `ocpp2.0.1` nor
`ocpp1.6` fails subprotocol negotiation. TLS (profile 2) uses the station's certificate.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import ssl
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from agent.config.ocpp import OcppSettings
from agent.config.secrets import read_secret
from agent.ocpp.charger import OcppCharger
from agent.ocpp.link16 import Link16
from agent.ocpp.link201 import Link201
from agent.ocpp.pacing import SendPacer
from agent.ocpp.relay import Relay

log = logging.getLogger(__name__)

SUBPROTOCOLS = ("ocpp2.0.1", "ocpp1.6")
VERSION_OF = {"ocpp1.6": "1.6", "ocpp2.0.1": "2.0.1"}


class CentralSystem:
    def __init__(self, settings: OcppSettings, chargers: Mapping[str, OcppCharger]) -> None:
        """`chargers`: by charge point id."""
        self.s = settings
        self.chargers = dict(chargers)
        self.allowed = set(self.chargers) | set(settings.allow)
        self.unknown: dict[str, OcppCharger] = {}  # allow-listed ids without a charger entry
        # Local controller mode: one relay per charger, kept across its reconnections.
        self.relays: dict[str, Relay] = {}
        if settings.upstream is not None:
            for cp_id, ch in self.chargers.items():
                ch.relay = self.relays[cp_id] = Relay(ch, settings)
        # Profile sends after each control cycle, decreases first (pace_after_cycles).
        self.pacer = SendPacer(settings.increases_per_cycle)
        for ch in self.chargers.values():
            ch.pacer = self.pacer
        self._server: Server | None = None

    def pace_after_cycles(self, loop: Any) -> None:
        """Send what a control loop (`ControlLoop`) asks for right after each of its cycles,
        not inside them (see agent/ocpp/pacing.py)."""
        loop.between_cycles.append(self.pacer.after_cycle)

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        self._server = await serve(
            self._handle, self.s.host, self.s.port, subprotocols=list(SUBPROTOCOLS),  # type: ignore[arg-type]
            process_request=self._check, ssl=self._tls(), ping_interval=20, ping_timeout=20,
        )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for ch in self.chargers.values():
            await ch.close()

    def _tls(self) -> ssl.SSLContext | None:
        if self.s.tls_cert_file is None:
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # OCPP security profile 2
        ctx.load_cert_chain(self.s.tls_cert_file, self.s.tls_key_file)
        return ctx

    def _cp_id(self, path: str) -> str | None:
        prefix = self.s.path.rstrip("/") + "/"
        if not path.startswith(prefix):
            return None
        cp_id = path[len(prefix):].split("?")[0]
        return cp_id if cp_id and "/" not in cp_id else None

    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        cp_id = self._cp_id(request.path)
        if cp_id is None or cp_id not in self.allowed:
            log.warning("OCPP: refused unknown charge point %r", request.path)
            return connection.respond(HTTPStatus.NOT_FOUND, "unknown charge point\n")
        charger = self.chargers.get(cp_id)
        pw_file = charger.cfg.password_file if charger is not None else None
        if pw_file is not None:
            try:
                expected = read_secret(pw_file, f"{cp_id}.password_file")
            except ValueError as exc:
                log.error("OCPP: %s", exc)
                return connection.respond(HTTPStatus.INTERNAL_SERVER_ERROR, "no password\n")
            if not _basic_ok(request.headers.get("Authorization"), cp_id, expected):
                log.warning("OCPP: %s failed basic authentication", cp_id)
                return connection.respond(HTTPStatus.UNAUTHORIZED, "authentication failed\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        cp_id = self._cp_id(ws.request.path if ws.request else "") or ""
        charger = self.chargers.get(cp_id)
        version = VERSION_OF.get(ws.subprotocol or "")
        if charger is None or version is None:
            # Allow-listed without a charger entry: accepted but nothing to control.
            await ws.close(1008, "no charger configured for this id")
            return
        if charger.cfg.version is not None and charger.cfg.version != version:
            log.warning("OCPP: %s negotiated %s, configured %s", cp_id, version,
                        charger.cfg.version)
        relay = self.relays.get(cp_id)
        link: Any
        if relay is not None:
            link = relay.make_link(ws, version)
        else:
            cls = Link16 if version == "1.6" else Link201
            link = cls(cp_id, ws, charger, charger.traffic, self.s.call_timeout_s)
        old = charger.link
        if old is not None:
            # A charger that reconnects before its old socket timed out: the new one wins.
            charger.detach(old)
            asyncio.get_running_loop().create_task(old.close())
        charger.attach(link)
        log.info("OCPP: %s connected (%s)", cp_id, version)
        try:
            await (relay.serve() if relay is not None else link.start())
        except Exception as exc:  # ConnectionClosed, or anything a broken peer provokes
            log.info("OCPP: %s disconnected: %s", cp_id, exc)
        finally:
            charger.detach(link)


def _basic_ok(header: str | None, user: str, password: str) -> bool:
    if not header or not header.startswith("Basic "):
        return False
    try:
        decoded = base64.b64decode(header[6:], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    name, _, given = decoded.partition(":")
    return hmac.compare_digest(name, user) and hmac.compare_digest(given, password)
