"""The daemon's log output: one line per event on stderr (journald adds the time), plain
or JSON (`sems run --json`), with pymodbus kept to what an operator can act on."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime


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
