"""`sems sessions` shows, in a short `held` column, why the horizon plan holds each session
("price until 01:00"), from the same `held` field the local API serves per session
(`SessionView.held`, `Hold.as_dict()`); a session not held shows "-"."""

from __future__ import annotations

from datetime import UTC, datetime

from agent.api.context import SessionView, as_dict
from agent.cli.commands.sessions import render
from allocator.guidance import Hold

NOW = datetime(2026, 6, 17, 20, 7, 12, tzinfo=UTC).isoformat()
ONE = datetime(2026, 6, 18, 1, 0, tzinfo=UTC)
LEAVES = datetime(2026, 6, 18, 6, 30, tzinfo=UTC)


def session(sid: str, idx: int, binding: str, held: Hold | None) -> dict:
    return as_dict(SessionView(
        session_id=sid, charger_id="CP1", idx=idx, allocated_kw=0.0 if held else 22.0,
        vehicle_max_kw=50.0, consumed_kw=0.0, source="hardware", started_at=NOW,
        energy_kwh=1.5, binding=binding, held=held.as_dict() if held is not None else None))  # fmt: skip


def rows(out: str) -> dict[str, dict[str, str]]:
    """Each session's row, split on the table's column gaps (two spaces or more)."""
    import re

    lines = out.splitlines()
    head = re.split(r"\s{2,}", lines[0])
    return {ln.split()[0]: dict(zip(head, re.split(r"\s{2,}", ln), strict=False))
            for ln in lines[2:]}


def test_the_held_column_says_the_reason_and_until_when():
    out = render([
        session("aaaaaaaa-1", 1, "cap", Hold(reason="price", planned_kw=0.0, max_kw=50.0,
                                             until=ONE, departure=LEAVES, due_kwh=42.0,
                                             price_now=0.31, price_then=0.12)),
        session("bbbbbbbb-2", 2, "station", Hold(reason="peak", planned_kw=10.0, max_kw=50.0,
                                                 peak_kw=60.0, demand_charge=9.0)),
        session("cccccccc-3", 3, "vehicle", None),
        session("dddddddd-4", 4, "cap", Hold(reason="v2g", planned_kw=-11.0, max_kw=22.0,
                                             until=datetime(2026, 6, 19, 6, 0, tzinfo=UTC))),
    ], now=NOW)  # fmt: skip
    r = rows(out)
    assert r["aaaaaaaa"]["held"] == "price until 01:00"
    assert r["aaaaaaaa"]["binding"] == "cap"  # the binding column stays beside it
    assert r["bbbbbbbb"]["held"] == "peak"  # no until: not before it leaves
    assert r["cccccccc"]["held"] == "-"  # not held
    assert r["dddddddd"]["held"] == "v2g until 06-19 06:00"  # more than half a day on: dated
    # --wide: full ids and the time as the API gives it
    wide = render([session("aaaaaaaa-1", 1, "cap", Hold(reason="price", planned_kw=0.0,
                                                       max_kw=50.0, until=ONE))], wide=True, now=NOW)  # fmt: skip
    assert "aaaaaaaa-1" in wide and "price until 2026-06-18T01:00:00+00:00" in wide


def test_a_table_without_any_hold_keeps_its_columns():
    out = render([session("cccccccc-3", 3, "vehicle", None)], now=NOW)
    head = out.splitlines()[0].split()
    assert head[head.index("binding") + 1] == "held"
    assert rows(out)["cccccccc"]["held"] == "-"
