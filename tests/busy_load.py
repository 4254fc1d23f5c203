"""A busy core for `make test-loaded`: the suite run while another job takes a CPU.

`pytest --busy-cores N` (tests/conftest.py) starts N of these at the start of the session
and stops them at its end. Each one spins on a core and ends by itself after `max_s`
seconds or as soon as the pytest process that started it is gone, so an interrupted run
leaves nothing spinning.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time


def start(max_s: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, str(os.getpid()), str(max_s)],
                            stdin=subprocess.DEVNULL)  # fmt: skip


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def spin(parent: int, max_s: float) -> None:
    end = time.monotonic() + max_s
    n = 0
    while True:
        n += 1
        if n % 1_000_000 == 0 and (time.monotonic() > end or os.getppid() != parent):
            return


if __name__ == "__main__":
    spin(int(sys.argv[1]), float(sys.argv[2]))
