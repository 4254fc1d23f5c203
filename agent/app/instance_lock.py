"""One daemon per state directory.

A second `sems run` on the same state (seen: it deleted the running agent's API socket,
ran a second control loop up to 172.9 kW, fought over the MQTT client id and drove the
first one's outbox counters negative) must exit before it touches anything. The lock is
an `fcntl.flock` on the state directory itself (the database's folder): no file is created
or removed, and the kernel releases it when the holder dies, even by SIGKILL, so a crashed
agent never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class AlreadyRunning(Exception):
    pass


class InstanceLock:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._fd: int | None = None

    def acquire(self) -> None:
        """AlreadyRunning if another process holds the lock; never waits."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(
                f"another sems agent is running on {self.state_dir} (it holds the state "
                "directory's lock); this one exits without touching anything"
            ) from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
