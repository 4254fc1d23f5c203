"""`tls_insecure = true` (lab only) is said as a warning at every connection, against a
real Mosquitto with TLS (certificates made with the openssl CLI: tests/mosquitto.py).

The broker's certificate names 127.0.0.1 only; the uplink connects to it as `localhost`.
With the host name check on, that is refused; with tls_insecure it connects, and says so
on the first connection and again on the reconnection after a broker restart.
"""

from __future__ import annotations

import asyncio
import logging
import time

from mosquitto import make_certs

from agent.uplink.runner import sample
from uplink.helpers import open_uplink, running

WARNING = "tls_insecure = true: the broker's host name was not checked"


def warnings(caplog) -> int:
    return sum(
        1 for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "agent.uplink.publisher"
        and WARNING in r.getMessage()
    )  # fmt: skip


async def until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_tls_insecure_is_a_warning_at_every_connect(mosquitto_factory, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="agent.uplink.publisher")
    certs = make_certs(tmp_path / "pki")
    broker = mosquitto_factory(certs=certs)
    tls = dict(tls_ca_file=certs.ca, tls_cert_file=certs.client_cert,
               tls_key_file=certs.client_key, host="localhost", connect_timeout_s=2)  # fmt: skip

    async def scenario() -> None:
        # Host name checked: "localhost" is not in the certificate, so no connection.
        checked = open_uplink(tmp_path / "checked", broker.port, **tls)
        async with running(checked):
            await until(lambda: checked.status.last_error is not None, 15, "a refusal")
            assert not checked.status.connected
            error = checked.status.last_error or ""
            assert "hostname" in error.lower() or "certificate verify failed" in error, error
        assert warnings(caplog) == 0

        insecure = open_uplink(tmp_path / "insecure", broker.port, tls_insecure=True, **tls)
        async with running(insecure):
            await until(lambda: insecure.status.connected, 15, "the first connection")
            await until(lambda: warnings(caplog) == 1, 5, "the warning")
            insecure.publish(sample(0))
            await until(lambda: insecure.outbox.stats().depth == 0, 10, "delivery")
            await asyncio.to_thread(broker.restart)  # reconnects: the warning again
            await until(lambda: warnings(caplog) == 2, 30, "the warning on reconnecting")
            assert insecure.status.reconnects >= 1

    asyncio.run(scenario())
