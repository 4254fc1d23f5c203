"""`GET /metrics`: Prometheus text exposition, collected from the agent at scrape time.

A custom collector (rather than gauges updated by the control loop) keeps the 250 ms loop
free of metrics work: figures are read from the ApiContext and the store only when scraped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from agent.api.context import ApiContext
from agent.api.fleet_store import FleetStore

router = APIRouter(tags=["metrics"])


class AgentCollector(Collector):
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Any]:
        ctx = self.ctx
        db = ctx.store
        view = ctx.station_view()

        sessions = GaugeMetricFamily("sems_sessions", "Sessions by kind and status", labels=["kind", "status"])
        for kind, status, n in db.execute("SELECT kind, status, COUNT(*) FROM sessions GROUP BY kind, status"):
            sessions.add_metric([kind, status], n)
        fleet = FleetStore(db)
        for kind, status, n in db.execute("SELECT kind, status, COUNT(*) FROM fleet_sessions "
                                          "WHERE status = 'scheduled' GROUP BY kind, status"):
            sessions.add_metric([kind, status], n)
        yield sessions

        energy = CounterMetricFamily("sems_energy_transferred_kwh", "Energy transferred by type", labels=["type"])
        charged, discharged = db.execute(
            "SELECT COALESCE(SUM(energy_kwh),0), COALESCE(SUM(discharged_kwh),0) FROM sessions").fetchone()
        energy.add_metric(["charging"], charged)
        energy.add_metric(["v2g"], discharged)
        yield energy

        level = GaugeMetricFamily("sems_vehicle_battery_level_percent",
                                  "Vehicle battery level (fleet sessions with a known capacity)", labels=["vehicle_id"])
        live = {s.session_id: s for s in ctx.sessions()}
        for rec in fleet.list_sessions(status="active", limit=10_000):
            data, s = rec["data"], live.get(rec["session_id"] or "")
            if s is not None and data.get("battery_capacity_kwh"):
                level.add_metric([rec["vehicle_id"]],
                                 min(100.0, data["start_level"] + s.energy_kwh / data["battery_capacity_kwh"] * 100))
        yield level

        power = GaugeMetricFamily("sems_charging_power_kw", "Power drawn per connector",
                                  labels=["charger", "connector", "vehicle_id"])
        limit = GaugeMetricFamily("sems_charging_limit_kw", "Limit in force per connector", labels=["charger", "connector"])
        vehicles = {s.session_id: s.vehicle_id or "" for s in live.values()}
        for c in view.connectors:
            if c.power_kw is not None:
                power.add_metric([c.charger_id, str(c.idx), vehicles.get(c.session_id or "", "")], c.power_kw)
            limit.add_metric([c.charger_id, str(c.idx)], c.limit_kw)
        yield power
        yield limit

        yield GaugeMetricFamily("sems_grid_capacity_kw", "Grid connection capacity", value=view.grid_capacity_kw)
        if view.grid_power_kw is not None:
            yield GaugeMetricFamily("sems_grid_power_kw", "Grid import (> 0) or export (< 0)", value=view.grid_power_kw)
        yield GaugeMetricFamily("sems_ev_power_kw", "Total EV power", value=view.ev_power_kw)
        if view.battery_soc is not None:
            yield GaugeMetricFamily("sems_station_battery_soc_percent", "Stationary battery SoC", value=view.battery_soc)
        if view.pv_power_kw is not None:
            yield GaugeMetricFamily("sems_pv_power_kw", "PV production", value=view.pv_power_kw)

        ledger = ctx.savings()
        if ledger:
            eff = GaugeMetricFamily("sems_efficiency_ratio", "Measured efficiency", labels=["type"])
            for key, label in (("charging_efficiency", "charging"), ("v2g_efficiency", "v2g")):
                if ledger.get(key) is not None:
                    eff.add_metric([label], float(ledger[key]))
            yield eff
            if ledger.get("savings_eur") is not None:
                yield CounterMetricFamily("sems_cost_savings_eur", "Savings against the counterfactual",
                                          value=float(ledger["savings_eur"]))

        runs = GaugeMetricFamily("sems_optimization_runs", "Optimization runs by type and status", labels=["type", "status"])
        for type_, status, n in fleet.optimization_counts():
            runs.add_metric([type_, status], n)
        yield runs

        cycle = GaugeMetricFamily("sems_cycle_time_ms", "Control cycle duration", labels=["quantile"])
        for q, key in (("0.5", "p50"), ("0.99", "p99"), ("1", "max")):
            if key in view.cycle_ms:
                cycle.add_metric([q], view.cycle_ms[key])
        yield cycle
        yield CounterMetricFamily("sems_control_cycles", "Control cycles completed", value=view.cycles)
        yield CounterMetricFamily("sems_cycle_overruns", "Control cycles that overran their period", value=view.overruns)
        yield from ocpp_metrics(ctx)


def ocpp_metrics(ctx: ApiContext) -> Iterator[Any]:
    """Per OCPP charger: calls each way, errors (CallErrors, timeouts, rejected profiles) and
    the round trip of the agent's calls."""
    chargers = [(d.ocpp["chargePointId"], d.ocpp) for d in ctx.devices() if d.ocpp]
    if not chargers:
        return
    calls = CounterMetricFamily("sems_ocpp_calls", "OCPP calls by charge point and direction",
                                labels=["charge_point", "direction"])
    errors = CounterMetricFamily("sems_ocpp_errors", "OCPP call errors, timeouts and rejected "
                                 "profiles by charge point", labels=["charge_point"])
    rtt = GaugeMetricFamily("sems_ocpp_round_trip_ms", "Round trip of the agent's OCPP calls",
                            labels=["charge_point", "quantile"])
    connected = GaugeMetricFamily("sems_ocpp_connected", "1 while the charge point is connected",
                                  labels=["charge_point"])
    for cp_id, o in chargers:
        t = o["traffic"]
        calls.add_metric([cp_id, "from_charger"], t["callsIn"])
        calls.add_metric([cp_id, "to_charger"], t["callsOut"])
        errors.add_metric([cp_id], t["errors"])
        for q, key in (("0.5", "roundTripMsP50"), ("0.99", "roundTripMsP99")):
            if t.get(key) is not None:
                rtt.add_metric([cp_id, q], t[key])
        connected.add_metric([cp_id], 1.0 if o["connected"] else 0.0)
    yield calls
    yield errors
    yield rtt
    yield connected


def registry_for(ctx: ApiContext) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(ctx))
    return registry


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
async def metrics(request: Request) -> Response:
    registry = getattr(request.app.state, "registry", None)
    if registry is None:
        registry = request.app.state.registry = registry_for(request.app.state.ctx)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
