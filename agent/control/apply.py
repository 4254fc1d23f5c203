"""Safe apply: which limit writes to send this cycle, in which order, and sending them.

Rules (DESIGN.md, step 4):
- Decreases are written before increases, and all decreases are sent before any increase.
- An increase is only granted out of headroom the grid meter confirms: capacity - margin -
  measured import - power that current limits already allow but EVs do not draw yet (it
  could be drawn at any moment). With the meter stale, headroom is computed the same way
  from the safe (pessimistic) budget instead of a measurement. Headroom is shared among
  the increases in proportion to what each asks for, so a newly plugged EV ramps up over
  a few cycles instead of overshooting.
- A connector at 0 is not started below its minimum power (the EV would not charge).
- Changes under the deadband are not written; a stop (to 0) always is.
- V2G (targets < 0, agent/control/v2g.py): deepening a discharge lowers the import, so it is
  written with the decreases. Ending or easing one raises the import: it is written in the
  same cycle (a stop must not wait for headroom) but after every decrease, and what it adds
  is taken off the headroom the other increases share. A discharge that turns into charging
  stops at 0 first; the charging part comes out of headroom like any increase.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)

Key = tuple[str, int]  # (charger id, connector idx)


@dataclass(frozen=True, slots=True)
class Write:
    charger_id: str
    idx: int
    kw: float
    previous_kw: float | None
    reason: str  # "decrease" | "initial" | "v2g_end" | "increase" (the order they are sent)


@dataclass(frozen=True, slots=True)
class ApplyPlan:
    writes: tuple[Write, ...]  # decreases first
    headroom_kw: float  # granted to increases this cycle (before grants)
    held_back_kw: float  # increases asked for but not granted for lack of headroom


def plan_writes(
    targets: Mapping[Key, float],
    current: Mapping[Key, float | None],
    drawing: Mapping[Key, float],
    min_kw: Mapping[Key, float],
    initial_kw: Mapping[Key, float],
    *,
    import_kw: float,
    capacity_kw: float,
    margin_kw: float,
    deadband_kw: float,
) -> ApplyPlan:
    """`import_kw`: the measured grid import (or the safe-budget estimate when stale).
    `current`: limit in force per connector (None: unknown, e.g. first cycle).
    `drawing`: measured power per connector.
    `initial_kw`: safe limit for a connector whose limit in force is unknown (its fallback)."""
    decreases: list[Write] = []
    v2g_ends: list[Write] = []
    wants: list[tuple[Key, float, float | None]] = []
    outstanding = 0.0
    for key, cur in current.items():
        if cur is not None:
            # What the limit in force allows above the draw (a discharging EV may stop).
            outstanding += max(0.0, cur - drawing.get(key, 0.0))
    ending = 0.0
    for key, target in targets.items():
        cur = current.get(key)
        if cur is None:
            # Unknown limit in force (first cycle, failed write): write at most the
            # fallback, which is safe by construction; more comes out of headroom later.
            safe = min(target, initial_kw.get(key, 0.0))
            decreases.append(Write(key[0], key[1], round(safe, 3), None, "initial"))
            continue
        if target < cur and (target == 0.0 or cur - target >= deadband_kw):
            decreases.append(Write(key[0], key[1], target, cur, "decrease"))
        elif cur < 0.0 and target > cur and (target >= 0.0 or target - cur >= deadband_kw):
            end = min(target, 0.0)
            v2g_ends.append(Write(key[0], key[1], end, cur, "v2g_end"))
            ending += end - max(cur, drawing.get(key, cur))
        elif target - cur >= deadband_kw:
            wants.append((key, target, cur))

    # Decreases free power only once the EV follows, so they add no headroom this cycle;
    # a V2G discharge ending takes its share first.
    headroom = max(0.0, capacity_kw - margin_kw - import_kw - outstanding - ending)
    asked = sum(t - c for _, t, c in wants if c is not None)
    share = 1.0 if asked <= headroom or asked == 0 else headroom / asked
    increases: list[Write] = []
    granted_total = 0.0
    for key, target, cur in wants:
        assert cur is not None
        new = cur + (target - cur) * share
        if cur == 0.0 and new < min_kw.get(key, 0.0):
            continue  # would be below the EV's minimum: wait for more headroom
        if new - cur < deadband_kw and new < target:
            continue
        granted_total += new - cur
        increases.append(Write(key[0], key[1], round(new, 3), cur, "increase"))
    return ApplyPlan(
        writes=tuple(decreases + v2g_ends + increases),
        headroom_kw=headroom,
        held_back_kw=max(0.0, asked - granted_total),
    )


class LimitWriter(Protocol):
    async def set_limit(self, idx: int, kw: float) -> None: ...


async def execute(plan: ApplyPlan, chargers: Mapping[str, LimitWriter]) -> dict[Key, bool]:
    """Send the plan: every decrease (concurrently across chargers) before any V2G end,
    those before any increase. Returns success per connector; a failed write leaves the
    limit in force unknown to us."""
    results: dict[Key, bool] = {}
    decreases = [w for w in plan.writes if w.reason in ("decrease", "initial")]
    ends = [w for w in plan.writes if w.reason == "v2g_end"]
    increases = [w for w in plan.writes if w.reason == "increase"]
    for batch in (decreases, ends, increases):
        if batch:
            await _send(batch, chargers, results)
    return results


async def _send(batch: list[Write], chargers: Mapping[str, LimitWriter], out: dict) -> None:
    # One charger's writes go out in order on its connection; chargers run concurrently.
    by_charger: dict[str, list[Write]] = {}
    for w in batch:
        by_charger.setdefault(w.charger_id, []).append(w)

    async def one(cid: str, writes: list[Write]) -> None:
        for w in writes:
            try:
                await chargers[cid].set_limit(w.idx, w.kw)
                out[(w.charger_id, w.idx)] = True
            except Exception as exc:  # a device error must not stop the other writes
                log.warning("limit write %s/%d=%.2f kW failed: %s", cid, w.idx, w.kw, exc)
                out[(w.charger_id, w.idx)] = False

    await asyncio.gather(*(one(cid, ws) for cid, ws in by_charger.items()))
