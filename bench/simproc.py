"""The hardware simulator as a child process for the benchmarks (its servers must not share
the measured event loop): `with simulator(station) as ready: ...`.

A child process run directly rather than through agent.demo.children, whose simulator also
opens the RS-485 pseudo-terminals and keeps a log file: here only loopback TCP is measured.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def simulator(station: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """`sems-sim --no-rtu` on `station` (the simulator's JSON format); yields its ready line
    (`endpoints`, `control`), and stops it on leaving (SIGTERM, then SIGKILL after 5 s)."""
    fd, path = tempfile.mkstemp(suffix=".json", prefix="bench-station-")
    with os.fdopen(fd, "w") as f:
        json.dump(station, f)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from hardware_sim.cli import main; raise SystemExit(main())",
         "--station", path, "--no-rtu"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"bench: sems-sim did not start (exit {proc.wait(5)})")
        yield json.loads(line)
    finally:
        stop(proc)
        os.unlink(path)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 5 s."""
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
