"""Serving: socket permissions and group, the TCP bearer token, stale and live sockets."""

from __future__ import annotations

import asyncio
import grp
import os
import stat

import httpx
import pytest

from agent.api.server import ApiServerSettings, bind_unix_socket
from api.live import TOKEN


def test_socket_is_0660(live):
    assert stat.S_IMODE(os.stat(live.socket).st_mode) == 0o660
    assert stat.S_ISSOCK(os.stat(live.socket).st_mode)


def test_tcp_needs_the_bearer_token(live):
    base = f"http://127.0.0.1:{live.server.tcp_port}"
    assert httpx.get(base + "/health").status_code == 401
    assert httpx.get(base + "/station/status", headers={"Authorization": "Bearer wrong-token-000000"}).status_code == 401
    ok = httpx.get(base + "/station/status", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json() == {"sessions": {}}
    # The scheme is case-insensitive (RFC 7235); the token is not.
    lower = httpx.get(base + "/station/status", headers={"Authorization": f"bearer {TOKEN}"})
    assert lower.status_code == 200
    assert httpx.get(base + "/station/status",
                     headers={"Authorization": f"bearer {TOKEN.upper()}x"}).status_code == 401


def test_framework_refusals_answer_with_error_not_detail(live):
    base = f"http://127.0.0.1:{live.server.tcp_port}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    missing = httpx.get(base + "/no/such/route", headers=auth)
    wrong_method = httpx.delete(base + "/station/status", headers=auth)
    for r in (missing, wrong_method):
        assert r.status_code in (404, 405) and set(r.json()) == {"error"}, r.text


def _another_group() -> grp.struct_group | None:
    """A group the socket can be given that is NOT the process's own (so the test sees the
    chown, not the default): any group for root, a supplementary one otherwise."""
    mine = os.getgid()
    allowed = None if os.geteuid() == 0 else set(os.getgroups())
    for g in grp.getgrall():
        if g.gr_gid != mine and (allowed is None or g.gr_gid in allowed):
            return g
    return None


def test_socket_group_is_applied(tmp_path):
    group = _another_group()
    if group is None:
        pytest.skip("no group other than the process's own to give the socket")
    sock = bind_unix_socket(tmp_path / "g.sock", 0o660, group.gr_name)
    try:
        assert os.stat(tmp_path / "g.sock").st_gid == group.gr_gid != os.getgid()
    finally:
        sock.close()


def test_unknown_group_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="api.socket_group: unknown group 'no-such-group-x'"):
        bind_unix_socket(tmp_path / "g.sock", 0o660, "no-such-group-x")


def test_stale_socket_is_replaced_but_a_live_one_is_refused(tmp_path, live):
    import socket as s

    stale = tmp_path / "stale.sock"
    dead = s.socket(s.AF_UNIX)
    dead.bind(str(stale))
    dead.close()  # file left behind, nobody listening
    bind_unix_socket(stale, 0o660, None).close()
    with pytest.raises(ValueError, match="in use"):
        bind_unix_socket(live.socket, 0o660, None)


def test_settings_refuse_non_loopback_and_short_tokens(tmp_path):
    with pytest.raises(ValueError, match="loopback"):
        ApiServerSettings(tcp_host="0.0.0.0")
    with pytest.raises(ValueError, match="token"):
        ApiServerSettings(tcp_port=0).bearer_token()
    (tmp_path / "tok").write_text(TOKEN + "\n")
    (tmp_path / "tok").chmod(0o644)
    with pytest.raises(ValueError, match=r"api.token_file: .* accessible to group or others"):
        ApiServerSettings(tcp_port=0, token_file=tmp_path / "tok").bearer_token()
    (tmp_path / "tok").chmod(0o600)
    assert ApiServerSettings(tcp_port=0, token_file=tmp_path / "tok").bearer_token() == TOKEN


def test_server_stops_and_removes_its_socket(tmp_path):
    from agent.api import create_app
    from agent.api.server import ApiServer

    async def go() -> None:
        server = ApiServer(create_app(None), ApiServerSettings(socket_path=tmp_path / "x.sock"))  # type: ignore[arg-type]
        await server.start()
        assert (tmp_path / "x.sock").exists()
        await server.stop()
        assert not (tmp_path / "x.sock").exists()

    asyncio.run(go())
