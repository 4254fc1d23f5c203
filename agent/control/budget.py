"""What the allocator may count on this cycle, degraded modes included.

- Grid meter fresh: the base load (everything but the EVs) is measured as
  grid import - EV power + PV + battery discharge, and remembered for `base_load_window_s`.
  A charger's sampled draw (OCPP meter values) counts as at a circuit meter
  (agent/control/counted_draws.py).
- Grid meter stale: the safe budget assumes the highest base load seen recently or the
  configured pessimistic value, whichever is higher, and counts on no PV or battery (their
  output may drop unseen).
- Charger unreachable: its connectors count as drawing their last limit (reserved), since
  it may ramp up to that limit at any time and can no longer be told otherwise.
- BMS stale: no battery discharge (and no charging) is counted on.
- Grid meter implausible (its sign contradicts the chargers' draw, see grid_sign.py): the
  safe budget, as for a stale meter.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from agent.control.counted_draws import CountedDraws
from agent.control.grid_sign import contradiction
from agent.model.snapshot import Snapshot


class WindowMax:
    """Maximum over a sliding time window (monotonic deque: O(1) amortised per sample)."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._q: deque[tuple[float, float]] = deque()

    def add(self, t: float, value: float) -> None:
        while self._q and self._q[-1][1] <= value:
            self._q.pop()
        self._q.append((t, value))
        self._expire(t)

    def max(self, t: float) -> float | None:
        self._expire(t)
        return self._q[0][1] if self._q else None

    def _expire(self, t: float) -> None:
        while self._q and self._q[0][0] < t - self.window_s:
            self._q.popleft()


@dataclass(frozen=True, slots=True)
class BudgetInputs:
    base_load_kw: float  # what the allocator subtracts from the grid capacity (incl. reserved)
    pv_kw: float
    battery: dict | None  # allocator's battery object, or None when not counted on
    reserved_kw: float  # unreachable chargers' last limits
    measured_base_kw: float | None  # this cycle's measured base load, None if meter stale
    modes: frozenset[str]  # active degraded modes, e.g. "grid_meter_stale", "bms_stale"


def budget_inputs(
    snap: Snapshot,
    base_history: WindowMax,
    pessimistic_base_kw: float,
    last_limits: Mapping[tuple[str, int], float | None],  # None: unknown, reserves nothing
    last_power: Mapping[tuple[str, int], float],
    battery_cfg: tuple[float, float, float] | None,  # (min_soc, max_charge_kw, max_discharge_kw)
    *,
    pv_expected: bool = False,  # a PV inverter is configured: an unknown PV is not 0 kW
    draws: CountedDraws | None = None,  # agent/control/counted_draws.py; None: as read
) -> BudgetInputs:
    modes: set[str] = set()
    reserved = 0.0
    unreachable_draw = 0.0
    reachable_draw = 0.0
    steady_draw = 0.0  # the lower of this and the last cycle's draw, per connector
    for ch in snap.chargers:
        if ch.reachable:
            for c in ch.connectors:
                key = (ch.id, c.idx)
                drawn = draws.drawn.get(key, c.power_kw) if draws else c.power_kw
                reachable_draw += draws.base.get(key, drawn) if draws else drawn
                steady_draw += min(drawn, last_power.get(key, drawn))
            continue
        modes.add(f"charger_unreachable:{ch.id}")
        for c in ch.connectors:
            key = (ch.id, c.idx)
            reserved += last_limits.get(key) or 0.0
            unreachable_draw += last_power.get(key, 0.0)

    if snap.battery is None and battery_cfg is not None:
        modes.add("bms_stale")
    battery_power = (
        snap.battery.power_kw if snap.battery is not None else snap.inverter_battery_kw or 0.0
    )

    implausible = None
    # With the PV inverter silent, the PV covering part of the EVs' draw is unknown: a grid
    # reading below the draw is then no evidence of an inverted meter (seen in daylight with
    # a dead inverter: the meter was judged implausible and the station ran degraded).
    pv_unknown = pv_expected and snap.pv_kw is None
    if snap.grid_kw is not None and not pv_unknown:
        # The meter's reading may be a cycle older than the chargers' while an EV ramps
        # up: only draw already there last cycle can contradict it.
        implausible = contradiction(snap.grid_kw, steady_draw + unreachable_draw,
                                    snap.pv_kw or 0.0, battery_power)
        if implausible is not None:
            modes.add("grid_meter_implausible")
    if snap.grid_kw is not None and implausible is None:
        pv = snap.pv_kw or 0.0
        measured = snap.grid_kw - reachable_draw - unreachable_draw + pv + battery_power
        measured = max(0.0, measured)
        base_history.add(snap.t, measured)
        base = measured
        battery = _battery(snap, battery_cfg)
    else:
        if implausible is None:
            modes.add("grid_meter_stale")
        measured = None
        seen = base_history.max(snap.t)
        base = max(pessimistic_base_kw, seen if seen is not None else 0.0)
        pv = 0.0
        battery = None
    return BudgetInputs(
        base_load_kw=base + reserved,
        pv_kw=pv,
        battery=battery,
        reserved_kw=reserved,
        measured_base_kw=measured,
        modes=frozenset(modes),
    )


def _battery(snap: Snapshot, cfg: tuple[float, float, float] | None) -> dict | None:
    if cfg is None or snap.battery is None:
        return None
    min_soc, max_charge, max_discharge = cfg
    b = snap.battery
    return {
        "soc": min(100.0, max(0.0, b.soc)),
        "minSoc": min_soc,
        "maxChargePower": max(0.0, min(max_charge, b.max_charge_kw)),
        "maxDischargePower": max(0.0, min(max_discharge, b.max_discharge_kw)),
    }
