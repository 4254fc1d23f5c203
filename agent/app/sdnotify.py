"""The systemd notification protocol (sd_notify(3)), written from the spec.

Why not a library: the protocol is one datagram per message on the AF_UNIX socket named by
$NOTIFY_SOCKET, and the maintained Python packages either wrap libsystemd (a C build dep on
the station image) or skip the abstract-namespace and WATCHDOG_PID rules below.

Rules implemented:
- $NOTIFY_SOCKET is a filesystem path, or an abstract socket when it starts with '@'
  (the '@' becomes a NUL byte). Unset: every call is a no-op (not under systemd).
- Messages are newline-separated KEY=VALUE assignments: READY=1, STATUS=..., WATCHDOG=1,
  STOPPING=1.
- The watchdog is enabled when $WATCHDOG_USEC is set and $WATCHDOG_PID is unset or ours;
  systemd recommends pinging at half the interval.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _address(env.get("NOTIFY_SOCKET", ""))
        self._sock: socket.socket | None = None
        self.watchdog_interval_s = _watchdog_interval(env)
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def send(self, *assignments: str) -> bool:
        """Send one datagram; False when not under systemd or the send failed (logged once)."""
        if self._address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(assignments).encode(), self._address)
            return True
        except OSError as exc:
            # systemd may be restarting; the daemon's control loop must not die of it.
            if not self._warned:
                log.warning("sd_notify to %r failed: %s", self._address, exc)
                self._warned = True
            return False

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _address(raw: str) -> str | None:
    if not raw:
        return None
    if raw.startswith("@"):
        return "\0" + raw[1:]
    if raw.startswith("/"):
        return raw
    # vsock: addresses (VMs) are not used on station hardware.
    log.warning("NOTIFY_SOCKET=%r is not a Unix socket path; notifications disabled", raw)
    return None


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Seconds between pings (half of WATCHDOG_USEC), or None when no watchdog is asked for."""
    usec = env.get("WATCHDOG_USEC", "")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2e6 if value > 0 else None


def _one_line(text: str) -> str:
    return " ".join(text.split())
