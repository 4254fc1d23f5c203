"""The daemon's log output: one line per event on stderr (journald adds the time), plain
or JSON (`sems run --json`), with pymodbus kept to what an operator can act on."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

REPEAT_WINDOW_S = 600.0  # the same transport line for the same endpoint: once per 10 min


class JsonLines(logging.Formatter):
    """One JSON object per line: time (ISO-8601 UTC), level, logger, message (+ error)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup(level: str, *, as_json: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines() if as_json else
                         logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # pymodbus logs every failed connect, every timeout and the raw bytes of a garbled
    # frame (hex dumps from a non-Modbus peer): the drivers already turn each of those into
    # one device fault episode (drivers/health.py), so its own loggers stay quiet unless
    # the operator asks for DEBUG.
    logging.getLogger("pymodbus").setLevel(logging.DEBUG if level == "DEBUG" else logging.CRITICAL)
    transport = logging.getLogger("drivers.transport")
    transport.filters[:] = [] if level == "DEBUG" else [Repeats()]


class Repeats(logging.Filter):
    """The drivers' transport logs every reconnect: a peer that accepts and then never
    answers (a device on the wrong port, a web server) gave two lines per cycle. The first
    line of a kind per endpoint passes; the same again within `window_s` is counted, and
    the count rides on the next one that passes. The fault's start and end are the agent's
    own lines (agent/control/episodes.py); `sems devices` keeps the exact counts."""

    def __init__(self, window_s: float = REPEAT_WINDOW_S,
                 now: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        super().__init__()
        self.window_s = window_s
        self.now = now
        self._seen: dict[tuple[str, str], list[float]] = {}  # -> [passed at, held back]

    def filter(self, record: logging.LogRecord) -> bool:
        first = record.args[0] if isinstance(record.args, tuple) and record.args else ""
        key = (str(record.msg), str(first))
        t = self.now()
        seen = self._seen.get(key)
        if seen is not None and t - seen[0] < self.window_s:
            seen[1] += 1
            return False
        if seen is not None and seen[1]:
            record.msg = f"{record.msg} (%d more like this in the last %.0f min)"
            record.args = (*(record.args if isinstance(record.args, tuple) else ()),
                           int(seen[1]), (t - seen[0]) / 60)  # fmt: skip
        self._seen[key] = [t, 0]
        return True


def swallow_solver_banner() -> None:
    """highspy prints a banner from C++ when the process's first solver is built (the
    planner sends it to stderr: allocator/planner.py `_new_highs`). With JSON logs that
    line would break "one JSON object per line", so the first solver is built here with
    both descriptors on /dev/null; later ones print nothing."""
    import os

    import highspy

    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        highspy.Highs()
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)
