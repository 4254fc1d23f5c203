"""Serving the local API inside the daemon's asyncio loop.

- Unix socket (default /run/sems/api.sock): created here, not by uvicorn, because uvicorn
  chmods its own sockets to 0666; ours is 0660 with a configurable group, so file
  permissions are the access control (the technician's `sems` runs in that group).
- Optional loopback TCP: every request needs `Authorization: Bearer <token>` (401
  otherwise). Only loopback addresses are accepted: this API is never exposed off-box.

uvicorn's signal capture is disabled: the daemon owns SIGTERM (fallback limits, flush).
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import hmac
import json
import os
import socket
import stat
from collections.abc import Generator
from pathlib import Path
from typing import Any

import uvicorn

from agent.api.body_limit import BodyLimitMiddleware
from agent.config.api import ApiServerSettings


class BearerTokenMiddleware:
    """ASGI middleware: 401 unless the request carries the bearer token (TCP listener only)."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            auth = dict(scope.get("headers") or []).get(b"authorization", b"")
            scheme, _, credentials = auth.partition(b" ")
            auth = b"Bearer " + credentials if scheme.lower() == b"bearer" else auth  # RFC 7235: any case
            if not hmac.compare_digest(auth, self._expected):
                body = json.dumps({"error": "missing or wrong bearer token"}).encode()
                await send({"type": "http.response.start", "status": 401, "headers": [
                    (b"content-type", b"application/json"), (b"www-authenticate", b"Bearer"),
                    (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the daemon handles signals itself


def bind_unix_socket(path: Path, mode: int, group: str | None) -> socket.socket:
    """A listening Unix socket at `path` with `mode` and `group`; a stale file is replaced,
    a live one (another agent answering) is an error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ValueError(f"api.socket_path: {path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # nobody listening: left over from a crash
        else:
            raise ValueError(f"api.socket_path: {path} is in use by another process")
        finally:
            probe.close()
    gid = -1
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise ValueError(f"api.socket_group: unknown group {group!r}") from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # Bind under a restrictive umask so the socket is never briefly world-accessible.
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    if gid != -1:
        os.chown(path, -1, gid)
    os.chmod(path, mode)
    sock.listen(64)
    sock.setblocking(False)
    return sock


class ApiServer:
    """The API's listeners. `await start()`, later `await stop()`; both bounded in time."""

    def __init__(self, app: Any, settings: ApiServerSettings) -> None:
        self.settings = settings
        self._app = app
        self._servers: list[tuple[_EmbeddedServer, list[socket.socket]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.tcp_port: int | None = None

    async def start(self, timeout: float = 10.0) -> None:
        s = self.settings
        token = s.bearer_token() if s.tcp_port is not None else None  # fail before binding
        uds = bind_unix_socket(s.socket_path, s.socket_mode, s.socket_group)
        self._add(self._app, [uds])
        if s.tcp_port is not None and token is not None:
            tcp = socket.create_server((s.tcp_host, s.tcp_port), reuse_port=False)
            tcp.setblocking(False)
            self.tcp_port = tcp.getsockname()[1]
            self._add(BearerTokenMiddleware(self._app, token), [tcp])
        self._tasks = [asyncio.create_task(srv.serve(sockets=socks)) for srv, socks in self._servers]
        async with asyncio.timeout(timeout):
            while not all(srv.started for srv, _ in self._servers):
                for task in self._tasks:
                    if task.done():
                        task.result()  # re-raise a start-up failure
                        raise RuntimeError("local API stopped during start-up")
                await asyncio.sleep(0.01)

    def _add(self, app: Any, socks: list[socket.socket]) -> None:
        app = BodyLimitMiddleware(app, self.settings.max_body_bytes)
        config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False,
                                timeout_graceful_shutdown=2)
        self._servers.append((_EmbeddedServer(config), socks))

    async def stop(self) -> None:
        for srv, _ in self._servers:
            srv.should_exit = True
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(FileNotFoundError):
            self.settings.socket_path.unlink()


async def serve(app: Any, settings: ApiServerSettings, stop: asyncio.Event) -> None:
    """Serve until `stop` is set (the daemon's shutdown event)."""
    server = ApiServer(app, settings)
    await server.start()
    try:
        await stop.wait()
    finally:
        await server.stop()
