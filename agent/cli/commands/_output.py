"""Output helpers shared by the technician commands: aligned tables and JSON."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def with_agent(args: Any, body: Callable[[Any], int]) -> int:
    """Run `body(client)` against the agent; unreachable agent -> one line, exit 69;
    an error answer -> one line, exit 1."""
    from agent.cli.client import EX_UNAVAILABLE, AgentUnreachable, ApiClient, ApiFailure

    try:
        with ApiClient(args.socket) as client:
            return body(client)
    except AgentUnreachable as exc:
        print(f"sems {args.command}: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    except ApiFailure as exc:
        print(f"sems {args.command}: agent answered {exc.status}: {exc}", file=sys.stderr)
        return 1
