"""Credentials are never sent in plaintext unless the operator says so
(`mqtt.allow_plaintext = true`); a world-readable password file is refused."""

from __future__ import annotations

import asyncio
import time

from uplink.helpers import open_uplink, running


def test_no_password_over_plaintext_unless_allowed(mosquitto_factory, tmp_path):
    broker = mosquitto_factory(passwords={"station": "s3cret", "cloud": "c"})
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")

    async def wait_error(up) -> str:
        async with running(up):
            deadline = time.monotonic() + 10
            while not up.status.last_error and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        return up.status.last_error or ""

    async def scenario() -> None:
        pw.chmod(0o600)
        refused = open_uplink(tmp_path / "a", broker.port, username="station", password_file=pw)
        error = await wait_error(refused)
        assert "mqtt.password: not sent without TLS" in error and "allow_plaintext" in error
        assert not refused.status.connected and refused.status.connected_since is None
        pw.chmod(0o644)
        exposed = open_uplink(tmp_path / "b", broker.port, username="station", password_file=pw,
                              allow_plaintext=True)  # fmt: skip
        assert "accessible to group or others" in await wait_error(exposed)
        pw.chmod(0o600)
        allowed = open_uplink(tmp_path / "c", broker.port, username="station", password_file=pw,
                              allow_plaintext=True)  # fmt: skip
        async with running(allowed):
            deadline = time.monotonic() + 10
            while not allowed.status.connected and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert allowed.status.connected, allowed.status.last_error

    asyncio.run(scenario())
