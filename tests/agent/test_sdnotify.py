"""sd_notify against a real AF_UNIX datagram socket, path and abstract namespace."""

from __future__ import annotations

import os
import socket

from agent.app.sdnotify import Notifier


def _receiver(address: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(address)
    s.settimeout(2)
    return s


def test_messages_arrive_in_order_on_a_path_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    rx = _receiver(path)
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"})
    assert n.enabled and n.watchdog_interval_s == 2.0
    n.ready("3 chargers,\n 1 session")
    n.watchdog()
    n.stopping()
    got = [rx.recv(4096).decode() for _ in range(3)]
    assert got == ["READY=1\nSTATUS=3 chargers, 1 session", "WATCHDOG=1", "STOPPING=1"]
    n.close()
    rx.close()


def test_abstract_namespace():
    name = f"sems-test-{os.getpid()}"
    rx = _receiver("\0" + name)
    n = Notifier({"NOTIFY_SOCKET": "@" + name})
    assert n.status("ok")
    assert rx.recv(4096) == b"STATUS=ok"
    rx.close()


def test_disabled_outside_systemd_and_watchdog_for_other_pid():
    n = Notifier({})
    assert not n.enabled and not n.ready() and n.watchdog_interval_s is None
    other = Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"})
    assert other.watchdog_interval_s is None


def test_send_failure_is_not_fatal(tmp_path):
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert n.watchdog() is False
