"""Safe apply: which limit writes to send this cycle, in which order, and sending them.

Rules (DESIGN.md, step 4):
- Decreases are written before increases, and all decreases are sent before any increase.
- An increase is only granted out of headroom the grid meter confirms: capacity - margin -
  measured import - power that current limits already allow but EVs do not draw yet (it
  could be drawn at any moment). A limit lowered less than `control.limit_follow_s` ago
  counts at its old value there, as the charger may not have followed yet (limit_lag.py). With the meter stale, headroom is computed the same way
  from the safe (pessimistic) budget instead of a measurement. Headroom is shared among
  the increases in proportion to what each asks for, so a newly plugged EV ramps up over
  a few cycles instead of overshooting.
- A fall of a meter's reading that a charger's stale sample may hide (an EV's own pause,
  agent/control/unseen_drops.py) is not headroom until that charger's next sample: the
  caller adds it to the import and takes it off each circuit's room.
- Under a metered circuit (agent/control/circuit_meters.py) an increase is also granted only
  out of the headroom that circuit's meter confirms (`circuits`), shared the same way: the
  grid's share and every circuit's above the connector, the smallest wins.
- A connector at 0 is not started below its minimum power (the EV would not charge).
- Changes under the deadband are not written; a stop (to 0) always is. An increase under it
  is, once it has been wanted for `control.deadband_hold_s` (`due`, agent/control/
  residues.py), like any increase: only out of the headroom the meters confirm, and not
  partly. A decrease under it is skipped only while the limits in force still fit with the
  old value: when the grid's headroom is negative (import plus what the limits allow above
  the draw exceeds capacity less margin), the skipped decreases are written largest first
  until they cover the deficit (fewest writes that restore the fit); under a circuit (`exact_keys`) every
  decrease is written, as its per-phase rating is not measured here (an unmetered
  sub-board has no meter margin to absorb it).
- V2G (targets < 0, agent/control/v2g.py): deepening a discharge lowers the import, so it is
  written with the decreases. Ending or easing one raises the import by what it gave, so it
  is an increase for the grid and a two-phase step: the cycle it becomes due, the allocator
  has already left the discharge out of the other EVs' supply, so their decreases go out
  (phase 1) and the discharge holds; from then on it ends (or ramps down by what there is)
  only out of the headroom the meter confirms, before any other increase (phase 2). It is
  bounded: once it has waited `end_timeout_s`, or from its second cycle on when the meter is
  stale (no headroom can be confirmed), it ends anyway, after the decreases; the others'
  limits were lowered in its first cycle already. A discharge turning into charging stops at
  0 first; the charging part comes out of headroom like any increase.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from agent.control.episodes import FaultLog

log = logging.getLogger(__name__)

Key = tuple[str, int]  # (charger id, connector idx)


@dataclass(frozen=True, slots=True)
class Write:
    charger_id: str
    idx: int
    kw: float
    previous_kw: float | None
    reason: str  # "decrease" | "initial" | "v2g_end" | "increase" (the order they are sent)
    # "v2g_end" covers a discharge ramped down by the headroom there is, not only ended.


@dataclass(frozen=True, slots=True)
class ApplyPlan:
    writes: tuple[Write, ...]  # decreases first
    headroom_kw: float  # granted to increases this cycle (before grants)
    held_back_kw: float  # increases asked for but not granted for lack of headroom
    # Discharges still waiting to end after this cycle's writes: key -> since when (the
    # `now` of the cycle the end became due). The caller hands it back next cycle.
    ends_waiting: Mapping[Key, float] = field(default_factory=dict)
    forced_ends: tuple[Key, ...] = ()  # ended without confirmed headroom (stale meter, timeout)


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
    now: float = 0.0,
    meter_fresh: bool = True,
    ends_waiting: Mapping[Key, float] | None = None,
    end_timeout_s: float = 5.0,
    lagging: Mapping[Key, float] | None = None,
    circuits: Sequence[tuple[frozenset[Key] | Mapping[Key, float], float]] = (),
    exact_keys: frozenset[Key] = frozenset(),
    due: Container[Key] = frozenset(),
) -> ApplyPlan:
    """`import_kw`: the measured grid import (or the safe-budget estimate when stale).
    `current`: limit in force per connector (None: unknown, e.g. first cycle).
    `drawing`: measured power per connector.
    `initial_kw`: safe limit for a connector whose limit in force is unknown (its fallback).
    `now`, `meter_fresh`, `ends_waiting` (the previous plan's), `end_timeout_s`: when a
    discharge that must end may end without the meter confirming its headroom.
    `lagging`: connectors lowered recently whose charger may not have followed yet
    (agent/control/limit_lag.py) -> the old limit they may still draw up to.
    `circuits`: (connectors below a metered circuit, kW of increases its meter confirms);
    the connectors either a set (each kW of increase counts whole) or a map connector ->
    the share of its increase that counts (one phase of a circuit: agent/control/
    circuit_meters.py weighs an EV's conductors 1, 1/2, 1/3).
    `exact_keys`: connectors whose decreases are written whatever their size (those under a
    circuit: its rating binds the limits in force, not a measurement).
    `due`: connectors whose increase is asked for whatever its size (residues.py)."""
    rooms = [(keys if isinstance(keys, Mapping) else dict.fromkeys(keys, 1.0), room)
             for keys, room in circuits]  # fmt: skip
    decreases: list[Write] = []
    ends: list[tuple[Key, float, float, float]] = []  # (key, end kW, limit, import it adds)
    wants: list[tuple[Key, float, float | None]] = []
    small: list[Write] = []  # decreases under the deadband, written only if needed
    outstanding = 0.0
    lag = lagging or {}
    for key, cur in current.items():
        if cur is not None:
            # What the limit in force allows above the draw (a discharging EV may stop);
            # a limit just lowered counts at its old value until the charger follows.
            allowed = max(cur, lag.get(key, cur))
            outstanding += max(0.0, allowed - drawing.get(key, 0.0))
    for key, target in targets.items():
        cur = current.get(key)
        if cur is None:
            # Unknown limit in force (first cycle, failed write): write at most the
            # fallback, which is safe by construction; more comes out of headroom later.
            safe = min(target, initial_kw.get(key, 0.0))
            decreases.append(Write(key[0], key[1], round(safe, 3), None, "initial"))
            continue
        if target < cur and (target == 0.0 or cur - target >= deadband_kw or key in exact_keys):
            decreases.append(Write(key[0], key[1], target, cur, "decrease"))
        elif target < cur:
            small.append(Write(key[0], key[1], target, cur, "decrease"))
        elif cur < 0.0 and target > cur and (target >= 0.0 or target - cur >= deadband_kw):
            end = min(target, 0.0)
            # What the import rises by: from what the EV gives now (it may give less than
            # its limit) to the new limit.
            ends.append((key, end, cur, max(0.0, end - max(cur, drawing.get(key, cur)))))
        elif target - cur >= deadband_kw or (key in due and target > cur):
            wants.append((key, target, cur))

    # Decreases free power only once the EV follows, so they add no headroom this cycle.
    raw_headroom = capacity_kw - margin_kw - import_kw - outstanding
    decreases += _needed_small(small, deficit_kw=-raw_headroom - sum(
        w.previous_kw - w.kw for w in decreases if w.previous_kw is not None))
    headroom = max(0.0, raw_headroom)
    v2g_ends, waiting, forced, headroom = _plan_ends(
        ends, headroom, now=now, meter_fresh=meter_fresh, waiting=ends_waiting or {},
        timeout_s=end_timeout_s, deadband_kw=deadband_kw,
    )  # fmt: skip
    asked = sum(t - c for _, t, c in wants if c is not None)
    share = 1.0 if asked <= headroom or asked == 0 else headroom / asked
    shares = {key: share for key, _, _ in wants}
    for weights, room in rooms:
        asked_here = sum(weights.get(k, 0.0) * (t - c) for k, t, c in wants if c is not None)
        if asked_here > room:
            for key in weights.keys() & shares.keys():
                if weights[key] > 0.0:
                    shares[key] = min(shares[key], max(0.0, room) / asked_here)
    increases: list[Write] = []
    granted: dict[Key, float] = {}
    deferred: list[tuple[Key, float, float]] = []  # (key, target, limit in force)
    metered = frozenset(k for weights, _ in rooms for k, w in weights.items() if w > 0.0)
    for key, target, cur in wants:
        assert cur is not None
        new = cur + (target - cur) * shares[key]
        if cur == 0.0 and new < min_kw.get(key, 0.0):
            if key in metered:
                deferred.append((key, target, cur))
            continue  # would be below the EV's minimum: wait for more headroom
        if new - cur < deadband_kw and new < target:
            if key in due:  # a residue shared out is a step under the deadband: whole, below
                deferred.append((key, target, cur))
            continue
        granted[key] = new - cur
        increases.append(Write(key[0], key[1], round(new, 3), cur, "increase"))
    # A room shared out leaves each start below its minimum (each due residue short of its
    # target): grant them one by one in arrival order instead, each whole, while the room
    # lasts (else none would ever be written: two residues under one sub-board's phase).
    for key, target, cur in deferred:
        left = min([headroom - sum(granted.values())] + [
            (room - sum(weights.get(k, 0.0) * v for k, v in granted.items())) / weights[key]
            for weights, room in rooms if weights.get(key, 0.0) > 0.0
        ])
        if cur == 0.0:  # a start: up to the room, at least the EV's minimum
            new = min(target, left)
            if new < min_kw.get(key, 0.0) or new <= 0.0:
                continue
            new = math.floor(new * 1000.0) / 1000.0  # never above the room
        elif target - cur <= left:  # a due residue: whole or not at all
            new = target
        else:
            continue
        granted[key] = new - cur
        increases.append(Write(key[0], key[1], new, cur, "increase"))
    granted_total = sum(granted.values())
    return ApplyPlan(
        writes=tuple(decreases + v2g_ends + increases),
        headroom_kw=headroom,
        held_back_kw=max(0.0, asked - granted_total),
        ends_waiting=waiting,
        forced_ends=forced,
    )


EPS_KW = 1e-6  # float noise: a headroom equal to the need covers it


def _needed_small(small: list[Write], *, deficit_kw: float) -> list[Write]:
    """The sub-deadband decreases to write so the limits in force fit the grid again:
    none while they fit (`deficit_kw` <= 0, what the larger decreases free counted), else
    the largest first until their sum covers the deficit, or all of them. Largest first:
    the fewest writes that restore the fit; one sort per cycle, only when over."""
    if deficit_kw <= EPS_KW or not small:
        return []
    out: list[Write] = []
    for w in sorted(small, key=lambda w: (w.previous_kw or 0.0) - w.kw, reverse=True):
        out.append(w)
        deficit_kw -= (w.previous_kw or 0.0) - w.kw
        if deficit_kw <= EPS_KW:
            break
    return out


def _plan_ends(
    ends: list[tuple[Key, float, float, float]],
    headroom: float,
    *,
    now: float,
    meter_fresh: bool,
    waiting: Mapping[Key, float],
    timeout_s: float,
    deadband_kw: float,
) -> tuple[list[Write], dict[Key, float], tuple[Key, ...], float]:
    """Phase 2 of ending discharges: (writes, still waiting, forced, headroom left).

    An end is written whole when the headroom covers what it adds, when it adds nothing (the
    EV already stopped giving), or when it is forced: it has waited at least one cycle (the
    others' decreases went out then) and the meter is stale or `timeout_s` has passed.
    Otherwise it ramps down by the headroom there is, if that passes the deadband, and waits.
    """
    writes: list[Write] = []
    still: dict[Key, float] = {}
    forced: list[Key] = []
    for key, end, cur, adds in ends:
        since = waiting.get(key, now)
        overdue = since < now and (not meter_fresh or now - since >= timeout_s)
        if adds <= headroom + EPS_KW or overdue:
            writes.append(Write(key[0], key[1], end, cur, "v2g_end"))
            headroom = max(0.0, headroom - adds)
            if overdue and adds > EPS_KW:
                forced.append(key)
                log.warning(
                    "V2G %s/%d: discharge ended after %.1f s without the headroom it needs "
                    "(%s; the other EVs were lowered first)", key[0], key[1], now - since,
                    "grid meter stale" if not meter_fresh else "timeout",
                )  # fmt: skip
            continue
        still[key] = since
        # Ramp down by what the meter confirms (floored to the watt: never above it).
        ramped = math.floor((end - adds + headroom) * 1000.0) / 1000.0
        if meter_fresh and ramped - cur >= deadband_kw:
            writes.append(Write(key[0], key[1], ramped, cur, "v2g_end"))
            headroom = 0.0
    return writes, still, tuple(forced), headroom


class LimitWriter(Protocol):
    async def set_limit(self, idx: int, kw: float) -> None: ...


async def execute(plan: ApplyPlan, chargers: Mapping[str, LimitWriter],
                  faults: FaultLog | None = None) -> dict[Key, bool]:  # fmt: skip
    """Send the plan: every decrease (concurrently across chargers) before any V2G end,
    those before any increase. Returns success per connector; a failed write leaves the
    limit in force unknown to us. `faults`: failures logged per episode, not per write."""
    results: dict[Key, bool] = {}
    decreases = [w for w in plan.writes if w.reason in ("decrease", "initial")]
    ends = [w for w in plan.writes if w.reason == "v2g_end"]
    increases = [w for w in plan.writes if w.reason == "increase"]
    for batch in (decreases, ends, increases):
        if batch:
            await _send(batch, chargers, results, faults)
    return results


async def _send(batch: list[Write], chargers: Mapping[str, LimitWriter], out: dict,
                faults: FaultLog | None) -> None:  # fmt: skip
    # One charger's writes go out in order on its connection; chargers run concurrently.
    by_charger: dict[str, list[Write]] = {}
    for w in batch:
        by_charger.setdefault(w.charger_id, []).append(w)

    async def one(cid: str, writes: list[Write]) -> None:
        for w in writes:
            key = f"limit:{cid}/{w.idx}"
            try:
                await chargers[cid].set_limit(w.idx, w.kw)
                out[(w.charger_id, w.idx)] = True
            except Exception as exc:  # a device error must not stop the other writes
                if faults is None:
                    log.warning("limit write %s/%d=%.2f kW failed: %s", cid, w.idx, w.kw, exc)
                else:
                    faults.failed(key, f"limit write {cid}/{w.idx} failed", str(exc))
                out[(w.charger_id, w.idx)] = False
            else:
                if faults is not None:
                    faults.succeeded(key)

    await asyncio.gather(*(one(cid, ws) for cid, ws in by_charger.items()))
