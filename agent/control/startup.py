"""Start-up as a state machine: what a (re)started agent may write, cycle by cycle.

A restarted agent (watchdog, OOM, kill -9) finds the chargers holding the limits its
predecessor wrote and the battery discharging at its predecessor's setpoint. Writing before
it has seen that state is how a restart overshoots: a battery setpoint of 0 written before
the BMS and the meter were read took 30 kW of support away while the EVs kept drawing.

    READING   nothing is written (no limit, no battery setpoint) until the grid meter, the
              BMS (if there is a battery) and every reachable charger's present limits have
              been read, or `timeout_s` has passed since the first cycle: then whatever is
              still missing is handled by the degraded budget (budget.py) as in any cycle.
    LOWERING  the first cycle that may write: decreases (and fallback-capped writes for an
              unknown limit) only; a battery setpoint only if it discharges at least as
              much as the battery gives now (it can only lower the import).
    RUNNING   the controller's plan as it is.

The gate only removes writes from a Decision; it never adds one, so it cannot raise a
limit the controller did not already plan within its own rules.
"""

from __future__ import annotations

import dataclasses
import logging
from enum import Enum
from typing import TYPE_CHECKING

from agent.control.apply import ApplyPlan
from agent.model.snapshot import Snapshot

if TYPE_CHECKING:
    from agent.control.decision import Decision

log = logging.getLogger(__name__)

LOWERING_REASONS = ("decrease", "initial")


class Phase(Enum):
    READING = "reading"
    LOWERING = "lowering"
    RUNNING = "running"


class StartupGate:
    def __init__(self, *, has_battery: bool, timeout_s: float) -> None:
        self.has_battery = has_battery
        self.timeout_s = timeout_s
        self.phase = Phase.READING
        self._first_t: float | None = None

    def missing(self, snap: Snapshot) -> list[str]:
        """What start-up still waits for in this snapshot (empty: everything was read)."""
        out = []
        if snap.grid_kw is None:
            out.append("grid meter")
        if self.has_battery and snap.battery is None:
            out.append("BMS")
        for ch in snap.chargers:
            if not ch.reachable:
                out.append(f"charger {ch.id}")
        return out

    def gate(self, decision: Decision) -> Decision:
        snap = decision.snapshot
        if self.phase is Phase.RUNNING:
            return decision
        if self.phase is Phase.READING:
            if self._first_t is None:
                self._first_t = snap.t
            missing = self.missing(snap)
            waited = snap.t - self._first_t
            if missing and waited < self.timeout_s:
                return _hold(decision)
            if missing:
                log.warning("start-up: %s not read after %.1f s; writing under the degraded "
                            "budget", ", ".join(missing), waited)  # fmt: skip
            else:
                log.info("start-up: meter, BMS and chargers read; first writes lower only")
            self.phase = Phase.LOWERING
            return _lower_only(decision)
        # LOWERING: one cycle of decreases only, then the controller's own rules.
        self.phase = Phase.RUNNING
        log.info("start-up: done, control running")
        return decision


def _hold(decision: Decision) -> Decision:
    """Nothing written this cycle (reads only)."""
    plan = decision.plan
    return dataclasses.replace(
        decision,
        plan=ApplyPlan(writes=(), headroom_kw=0.0, held_back_kw=plan.held_back_kw,
                       ends_waiting=plan.ends_waiting),  # fmt: skip
        heartbeats=(),
        battery_setpoint_kw=None,
        phase_switches=(),
    )


def _lower_only(decision: Decision) -> Decision:
    plan = decision.plan
    writes = tuple(w for w in plan.writes if w.reason in LOWERING_REASONS)
    dropped = sum(w.kw - (w.previous_kw or 0.0) for w in plan.writes if w not in writes)
    sp = decision.battery_setpoint_kw
    battery = decision.snapshot.battery
    if sp is not None and (battery is None or sp < battery.power_kw):
        sp = None  # less discharge (or charging) than now would raise the import
    return dataclasses.replace(
        decision,
        plan=dataclasses.replace(plan, writes=writes, held_back_kw=plan.held_back_kw + dropped),
        battery_setpoint_kw=sp,
        phase_switches=(),  # a phase switch waits for the control's own rules
    )
