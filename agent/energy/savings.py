"""Savings ledger: what the station imported, exported, paid and emitted per interval.

Fed with meter samples (grid power, each session's charger power, battery power) and the
tariff in force, it keeps one row per billing interval (15 minutes by default): imported and
exported kWh, energy cost, the running peak of the 15-minute average import, CO2, energy per
session, and the charging / V2G efficiencies when vehicle-side energies are known. The
demand charge is billed once, on the period's highest interval average import.

The same ledger fed by the counterfactual simulation (`agent.energy.replay`, policy
`uncontrolled`: every EV at the most it can from arrival, no battery, no V2G, no price
awareness) gives the baseline; `savings(actual, baseline)` is the published comparison.

A battery that ends the billing day below the energy it began with has borrowed from the
next day: `refill_cost` prices buying the shortfall back (the replay's result and the
daemon's day message both add it to the day's cost). One ending above is not credited.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlite_utils

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

log = logging.getLogger(__name__)


@dataclass
class Interval:
    index: int  # interval number since the ledger's start
    start_h: float  # hours since the ledger's start
    import_kwh: float = 0.0
    export_kwh: float = 0.0
    energy_cost: float = 0.0  # EUR: import at its price minus export at its price
    co2_kg: float = 0.0  # imports times grid carbon intensity
    peak_kw: float = 0.0  # running peak: highest interval average import so far
    battery_charge_kwh: float = 0.0
    battery_discharge_kwh: float = 0.0
    session_kwh: dict[str, float] = field(default_factory=dict)  # metered at the charger
    v2g_kwh: dict[str, float] = field(default_factory=dict)  # delivered by V2G (grid side)
    # What the interval looked like, where the recorder knows it (None: unknown).
    pv_kwh: float | None = None
    soc_pct: float | None = None  # stationary battery SoC at the interval's end
    import_cap_kw: float | None = None  # lowest import cap in force
    import_price_eur_kwh: float | None = None


class SavingsLedger:
    """Integrates samples into intervals. Time is hours from the ledger's start (injected)."""

    def __init__(self, demand_charge: float = 0.0, interval_hours: float = 0.25) -> None:
        if interval_hours <= 0:
            raise ValueError("interval_hours: must be > 0")
        self.demand_charge = demand_charge
        self.interval_hours = interval_hours
        self.intervals: list[Interval] = []
        self.vehicle_kwh: dict[str, float] = {}  # energy stored in each vehicle (if known)
        self.vehicle_v2g_kwh: dict[str, float] = {}  # energy taken out of each vehicle

    def _interval(self, t_h: float) -> Interval:
        idx = int(t_h / self.interval_hours + 1e-9)
        while len(self.intervals) <= idx:
            i = len(self.intervals)
            peak = self.intervals[-1].peak_kw if self.intervals else 0.0
            self.intervals.append(Interval(i, i * self.interval_hours, peak_kw=peak))
        return self.intervals[idx]

    def record(
        self,
        t_h: float,
        dt_h: float,
        grid_kw: float,
        import_price: float,
        export_price: float,
        carbon_g_per_kwh: float = 0.0,
        session_kw: dict[str, float] | None = None,
        battery_kw: float = 0.0,
    ) -> None:
        """One metered sample held for `dt_h` hours from `t_h` (it must not cross an interval)."""
        iv = self._interval(t_h)
        imp = max(grid_kw, 0.0) * dt_h
        exp = max(-grid_kw, 0.0) * dt_h
        iv.import_kwh += imp
        iv.export_kwh += exp
        iv.energy_cost += imp * import_price - exp * export_price
        iv.co2_kg += imp * carbon_g_per_kwh / 1000.0
        iv.peak_kw = max(iv.peak_kw, iv.import_kwh / self.interval_hours)
        if battery_kw > 0:
            iv.battery_discharge_kwh += battery_kw * dt_h
        else:
            iv.battery_charge_kwh += -battery_kw * dt_h
        for sid, kw in (session_kw or {}).items():
            if kw >= 0:
                iv.session_kwh[sid] = iv.session_kwh.get(sid, 0.0) + kw * dt_h
            else:
                iv.v2g_kwh[sid] = iv.v2g_kwh.get(sid, 0.0) - kw * dt_h

    def record_vehicle(self, session_id: str, stored_kwh: float, taken_kwh: float = 0.0) -> None:
        """Vehicle-side energies (from the EV's SoC): needed for the efficiency figures."""
        self.vehicle_kwh[session_id] = self.vehicle_kwh.get(session_id, 0.0) + stored_kwh
        self.vehicle_v2g_kwh[session_id] = self.vehicle_v2g_kwh.get(session_id, 0.0) + taken_kwh

    # -- totals --------------------------------------------------------------------------
    @property
    def import_kwh(self) -> float:
        return sum(iv.import_kwh for iv in self.intervals)

    @property
    def export_kwh(self) -> float:
        return sum(iv.export_kwh for iv in self.intervals)

    @property
    def peak_kw(self) -> float:
        return max((iv.peak_kw for iv in self.intervals), default=0.0)

    @property
    def energy_cost(self) -> float:
        return sum(iv.energy_cost for iv in self.intervals)

    @property
    def cost(self) -> float:
        """Energy cost plus the demand charge on the highest interval average import."""
        return self.energy_cost + self.demand_charge * self.peak_kw

    @property
    def co2_kg(self) -> float:
        return sum(iv.co2_kg for iv in self.intervals)

    @property
    def battery_throughput_kwh(self) -> float:
        return sum(iv.battery_charge_kwh + iv.battery_discharge_kwh for iv in self.intervals)

    def session_energy(self) -> dict[str, float]:
        """kWh drawn by each session at its charger over the whole ledger."""
        out: dict[str, float] = {}
        for iv in self.intervals:
            for sid, kwh in iv.session_kwh.items():
                out[sid] = out.get(sid, 0.0) + kwh
        return out

    def v2g_energy(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for iv in self.intervals:
            for sid, kwh in iv.v2g_kwh.items():
                out[sid] = out.get(sid, 0.0) + kwh
        return out

    def charging_efficiency(self) -> float | None:
        """Energy stored in the vehicles / energy their chargers metered (None: unknown)."""
        drawn = self.session_energy()
        metered = sum(drawn.get(s, 0.0) for s in self.vehicle_kwh)
        stored = sum(self.vehicle_kwh.values())
        return stored / metered if metered > 0 and stored > 0 else None

    def v2g_efficiency(self) -> float | None:
        """Energy V2G delivered at the charger / energy taken out of the vehicles."""
        delivered = sum(self.v2g_energy().values())
        taken = sum(self.vehicle_v2g_kwh.values())
        return delivered / taken if taken > 0 and delivered > 0 else None

    def summary(self) -> dict[str, Any]:
        return {
            "cost": self.cost,
            "energyCost": self.energy_cost,
            "demandCharge": self.demand_charge * self.peak_kw,
            "importKwh": self.import_kwh,
            "exportKwh": self.export_kwh,
            "peakImport": self.peak_kw,
            "co2Kg": self.co2_kg,
            "batteryThroughput": self.battery_throughput_kwh,
            "chargingEfficiency": self.charging_efficiency(),
            "v2gEfficiency": self.v2g_efficiency(),
        }


def savings_pct(cost: float, baseline_cost: float) -> float:
    """What `cost` saves on `baseline_cost`, in % of it (0 when the baseline cost nothing)."""
    return 100.0 * (baseline_cost - cost) / baseline_cost if baseline_cost > 0 else 0.0


def savings(actual: SavingsLedger, baseline: SavingsLedger) -> dict[str, float]:
    """Counterfactual cost minus actual cost, in EUR and % of the counterfactual."""
    return {
        "cost": actual.cost,
        "baselineCost": baseline.cost,
        "savingsEur": baseline.cost - actual.cost,
        "savingsPct": savings_pct(actual.cost, baseline.cost),
    }


def refill_cost(
    ledger: SavingsLedger,
    short_kwh: float,
    import_price: ArrayLike,
    export_price: ArrayLike,
    *,
    max_charge_kw: float,
    charge_efficiency: float,
    grid_capacity_kw: float,
    time_limit_s: float = 60.0,
) -> float:
    """EUR it really costs to put `short_kwh` back into a battery after the day `ledger`
    metered: the cheapest way to buy it (through `charge_efficiency`, at most
    `max_charge_kw`) on top of what the day actually imported, at the day's prices
    (`import_price`/`export_price` per ledger interval, the day's length), the demand charge
    on any higher peak included. One small LP: the metered net import of each interval as a
    fixed load (an interval with no row, e.g. the agent not running, as none) and the refill
    as one flexible session; the cost is what it adds to the day's bill. The grid capacity
    holds except where the metered load already exceeded it (room for the refill is kept
    so the LP always has a solution).

    0 when nothing is short: a battery that ends above its start is not credited (the
    energy it holds is not money until it is used, and crediting it would reward filling
    it at the day's end). If the LP fails, `refill_bound` (higher, never lower)."""
    if short_kwh <= 1e-6:
        return 0.0
    import numpy as np

    from allocator.planner import ChargerSpec, PlanError, Planner, PlanRequest, SessionSpec

    imp = np.asarray(import_price, dtype=float)
    exp = np.asarray(export_price, dtype=float)
    sh = ledger.interval_hours
    n = imp.size
    net = np.zeros(n)
    for iv in ledger.intervals[:n]:
        net[iv.index] = (iv.import_kwh - iv.export_kwh) / sh

    def bill(sessions: list[SessionSpec]) -> float:
        p = Planner(time_limit=time_limit_s).plan(PlanRequest(
            import_price=imp, export_price=exp,
            pv_power=np.maximum(-net, 0.0), base_load=np.maximum(net, 0.0),
            grid_capacity=max(grid_capacity_kw, float(net.max(initial=0.0)) + max_charge_kw),
            chargers=[ChargerSpec("refill", max_charge_kw)], sessions=sessions,
            demand_charge=ledger.demand_charge, slot_hours=sh,
            charging_efficiency=charge_efficiency))
        return p.objective

    refill = SessionSpec("refill", "refill", departure_h=n * sh, energy_needed=short_kwh,
                         max_power=max_charge_kw)
    try:
        return max(0.0, bill([refill]) - bill([]))
    except PlanError as exc:
        bound = refill_bound(ledger, short_kwh, imp, max_charge_kw=max_charge_kw,
                             charge_efficiency=charge_efficiency)
        log.warning("refill LP failed (%s): charged its bound, %.2f EUR", exc, bound)
        return bound


def refill_bound(ledger: SavingsLedger, short_kwh: float, import_price: ArrayLike, *,
                 max_charge_kw: float, charge_efficiency: float) -> float:
    """An upper bound of `refill_cost`: the shortfall through the losses at the day's
    dearest import price, plus the demand charge on the whole charge power (no refill
    that fits in the day can raise the peak more)."""
    if short_kwh <= 1e-6:
        return 0.0
    import numpy as np

    dearest = float(np.max(np.asarray(import_price, dtype=float), initial=0.0))
    return (short_kwh / charge_efficiency * dearest
            + ledger.demand_charge * max_charge_kw)


def store(
    db: sqlite_utils.Database, ledger: SavingsLedger, station_start: str, policy: str = "actual"
) -> int:
    """Upsert the ledger's intervals into the `ledger` table; returns rows written."""
    with db.conn:
        for iv in ledger.intervals:
            db.execute(
                "INSERT OR REPLACE INTO ledger(period_start, policy, interval, import_kwh,"
                " export_kwh, energy_cost_eur, co2_kg, peak_kw, battery_charge_kwh,"
                " battery_discharge_kwh, session_kwh, v2g_kwh, pv_kwh, soc_pct, import_cap_kw,"
                " import_price_eur_kwh)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, json(?), json(?), ?, ?, ?, ?)",
                [
                    station_start, policy, iv.index, iv.import_kwh, iv.export_kwh,
                    iv.energy_cost, iv.co2_kg, iv.peak_kw, iv.battery_charge_kwh,
                    iv.battery_discharge_kwh, _json(iv.session_kwh), _json(iv.v2g_kwh),
                    iv.pv_kwh, iv.soc_pct, iv.import_cap_kw, iv.import_price_eur_kwh,
                ],
            )
    return len(ledger.intervals)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
