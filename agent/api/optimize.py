"""Optimisation runs of `/api/v1/optimization`: the station's data turned into a planner
request (allocator.planner), solved off the event loop, summarised for the caller.

Only sessions whose needs are known (a fleet session with battery capacity and levels, so
an energy target and a departure) enter the plan; the others stay with the real-time
allocator and are listed as `unplanned` in the result, rather than guessed at.
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime, timedelta
from typing import Any

from agent.api.context import ApiContext
from agent.api.fleet_store import FleetStore
from allocator import planner as lp

_lock = asyncio.Lock()  # one solve at a time: the daemon's planner instance is not reentrant


def _hours_until(ts: str | None, now: datetime) -> float | None:
    if not ts:
        return None
    return (datetime.fromisoformat(ts) - now).total_seconds() / 3600.0


def _energy_needed(data: dict[str, Any], energy_kwh: float) -> float | None:
    cap = data.get("battery_capacity_kwh")
    if not cap:
        return None
    need = (data["end_level"] - data["start_level"]) / 100.0 * cap - energy_kwh
    return max(0.0, need)


def build_request(ctx: ApiContext, params: dict[str, Any]) -> tuple[lp.PlanRequest, list[str]]:
    """A PlanRequest from the station now; also the ids of sessions left out and why."""
    now = ctx.now()
    view = ctx.station_view()
    config = ctx.station_config()
    slot_h = params.get("slot_minutes", 15) / 60.0
    n = max(1, math.ceil(params.get("horizon_hours", 24) / slot_h))
    horizon_h = n * slot_h
    flat = params.get("import_price_eur_kwh") or 0.0
    starts = [now + timedelta(hours=k * slot_h) for k in range(n)]
    slots = [ctx.signals.price_at(t) if ctx.signals is not None else None for t in starts]
    # The tariff where it is known, the caller's flat price (or 0: peak and unmet only) beyond.
    import_price = [s.import_eur_kwh if s else flat for s in slots]
    export_price = [s.export_eur_kwh if s else 0.0 for s in slots]
    demand_charge = params.get("demand_charge_eur_kw")
    if demand_charge is None and ctx.signals is not None:
        demand_charge = ctx.signals.demand_charge_eur_kw(now)
    store = FleetStore(ctx.store)
    fleet_filter = params.get("fleet_id")
    live = {s.session_id: s for s in ctx.sessions()}
    specs: list[lp.SessionSpec] = []
    unplanned: list[str] = []
    for rec in store.list_sessions(status="active", limit=10_000) + store.list_sessions(status="scheduled", limit=10_000):
        if fleet_filter and rec["fleet_id"] != fleet_filter:
            continue
        data = rec["data"]
        sess = live.get(rec["session_id"] or "")
        need = _energy_needed(data, sess.energy_kwh if sess else 0.0)
        departure = _hours_until(data.get("departure"), now)
        charger = (sess.charger_id if sess else None) or data.get("charger_id")
        if need is None or departure is None or departure <= 0 or charger is None or config.charger(charger) is None:
            unplanned.append(rec["id"])
            continue
        max_power = data.get("max_power_kw") or (sess.vehicle_max_kw if sess else None) or config.charger(charger).maxPower  # type: ignore[union-attr]
        specs.append(
            lp.SessionSpec(
                session_id=rec["id"],
                charger_id=charger,
                departure_h=min(departure, horizon_h),
                energy_needed=need,
                max_power=max_power,
                v2g=rec["kind"] == "v2g",
            )
        )
    req = lp.PlanRequest(
        import_price=import_price,
        export_price=export_price,
        pv_power=[view.pv_power_kw or 0.0] * n,
        base_load=[view.base_load_kw or 0.0] * n,
        grid_capacity=config.gridCapacity,
        chargers=[lp.ChargerSpec(c.id, c.maxPower) for c in config.chargers],
        sessions=specs,
        demand_charge=demand_charge or 0.0,
        slot_hours=slot_h,
    )
    return req, unplanned


async def run(ctx: ApiContext, opt: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """Solve one optimisation; (result, None) or (None, error message)."""
    try:
        req, unplanned = build_request(ctx, opt["params"])
    except (lp.PlanError, ValueError) as exc:
        return None, str(exc)
    solver = getattr(ctx.planner, "plan", None) or lp.plan
    async with _lock:
        try:
            plan = await asyncio.to_thread(solver, req)
        except lp.PlanError as exc:
            return None, str(exc)
    result = plan.to_dict()
    result["unplanned"] = unplanned
    result["slotHours"] = req.slot_hours
    if opt["type"] == "battery":
        result.pop("sessions", None)
    return result, None
