"""The local API's view of the running daemon (hardware mode): `ApiContext` over the one
read model (`agent.state.StationState`: the last cycle's decision, limits and sessions,
device health, the planner, battery watch and savings ledger), the store, the cloud
signals and the uplink. It never sees the control loop: commands go through
`StationCommands` (the daemon's is agent/app/commands.py).

Sessions here come from connector states (an EV plugged in), so `create_session` and
`report_consumption` are refused with 409 (NotSupported); `stop_session` ends a session as
the cloud's `session.stop` does. Everything is read on the daemon's event loop between
awaits, so a handler always sees one whole control cycle (`StationState.cycle`).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from agent.api.context import (
    ApiError,
    ConnectorView,
    DependencyState,
    DeviceView,
    NewSession,
    NotFound,
    NotSupported,
    SessionView,
    StationView,
    UnknownSession,
    UplinkView,
    broker_state,
    uplink_view,
)
from agent.api.models import ChargerConfig, StationConfig
from agent.control.links import link_state
from agent.control.tree import circuit_loads
from agent.model.clock import Clock, iso
from agent.store.signals import StationConfig as CloudStationConfig

if TYPE_CHECKING:
    import sqlite_utils

    from agent.state.station_state import StationCommands, StationState
    from agent.store.signals import Signals
    from agent.uplink import Uplink


class DaemonContext:
    def __init__(
        self,
        state: StationState,
        commands: StationCommands,
        db: sqlite_utils.Database,
        clock: Clock,
        *,
        signals: Signals,
        uplink: Uplink | None = None,
    ) -> None:
        self.state = state
        self.commands = commands
        # ApiContext's collaborators, as plain attributes. No planner object: optimisation
        # requests run allocator.planner's LP (agent/api/optimize.py).
        self.store = db
        self.signals = signals
        self.planner: Any | None = None
        self._clock = clock
        self._uplink = uplink
        self._last_ack_wall: float | None = None
        self._last_published = 0

    def now(self) -> datetime:
        return self._clock.now()

    # --- configuration --------------------------------------------------------------------

    def station_config(self) -> StationConfig:
        s = self.state.settings
        return StationConfig(
            stationId=s.station.id,
            gridCapacity=s.station.grid_capacity_kw,
            chargers=[
                ChargerConfig(id=c.id, maxPower=c.max_power_kw, connectors=c.connectors)
                for c in s.station.chargers
            ],
            baseLoad=self._base_load(),
        )

    def replace_station_config(self, config: StationConfig) -> None:
        if config.baseLoad is not None:
            raise ApiError("baseLoad: measured by the grid meter on this station, not set")
        try:
            # Schema-valid for the API, yet possibly outside what a station can be (no
            # charger, capacity 0, 16 connectors): a field error, never a 500.
            cloud = CloudStationConfig(
                station_id=config.stationId, grid_capacity=config.gridCapacity,
                chargers=[{"id": c.id, "max_power": c.maxPower, "connectors": c.connectors}
                          for c in config.chargers],
            )  # fmt: skip
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "config"
            raise ApiError(f"{where}: {err['msg']}") from None
        try:
            # Validated and swapped first; stored only if that worked (old config stays).
            self.signals.replace_station_config(cloud, apply=self._apply_now)
        except ValueError as exc:
            raise ApiError(str(exc)) from None

    def _apply_now(self, config: CloudStationConfig) -> None:
        self.commands.reconfigure_now(config)

    # --- live state -----------------------------------------------------------------------

    def station_view(self) -> StationView:
        st = self.state
        s = st.settings
        d = st.decision
        summary = st.stats.summary()
        limits = st.limits
        if d is None:
            return StationView(
                station_id=s.station.id, ts=iso(self.now()),
                grid_capacity_kw=s.station.grid_capacity_kw, grid_power_kw=None,
                base_load_kw=None, pv_power_kw=None, battery_soc=None, battery_power_kw=None,
                ev_power_kw=0.0, connectors=(), cycles=summary["cycles"],
            )  # fmt: skip
        snap = d.snapshot
        by_key = {(x.charger_id, x.connector_idx): x for x in d.sessions}
        allocations, bindings = d.allocations, d.binding
        connectors = []
        for c in snap.connectors():
            key = (c.charger_id, c.idx)
            x = by_key.get(key)
            limit = limits.get(key)
            connectors.append(ConnectorView(
                charger_id=c.charger_id, idx=c.idx, state=c.state,
                session_id=x.id if x else None,
                limit_kw=round(limit if limit is not None else 0.0, 3),
                power_kw=round(c.power_kw, 3),
                binding=bindings.get(x.id) if x and x.id in allocations else None,
                held=d.held[x.id].as_dict() if x and x.id in d.held else None,
                phases=d.phases[key].words() if x and key in d.phases else None,
                csms_cap_kw=c.cap_kw,
            ))  # fmt: skip
        booked = {r.key: r.phases for r in d.inputs.sessions if r.phases}
        return StationView(
            station_id=s.station.id,
            ts=iso(snap.ts),
            grid_capacity_kw=s.station.grid_capacity_kw,
            grid_power_kw=snap.grid_kw,
            base_load_kw=round(d.budget.base_load_kw, 3),
            pv_power_kw=snap.pv_kw,
            battery_soc=snap.battery.soc if snap.battery else None,
            battery_power_kw=snap.battery.power_kw if snap.battery else None,
            ev_power_kw=round(sum(c.power_kw for c in snap.connectors()), 3),
            connectors=tuple(connectors),
            cycles=summary["cycles"],
            cycle_ms=summary["cycle_ms"],
            overruns=summary["overruns"],
            degraded=tuple(sorted(st.modes)),
            power_cap_kw=d.power_cap_kw,
            mode="hardware",
            circuits=tuple(circuit_loads(
                s.station, {(c.charger_id, c.idx): c.power_kw for c in snap.connectors()},
                {m.circuit_id: (m.currents_a, m.power_kw) for m in snap.circuit_meters
                 if m.currents_a is not None}, booked)),
        )

    def sessions(self) -> list[SessionView]:
        st = self.state
        d = st.decision
        active = st.sessions
        allocations = d.allocations if d else {}
        bindings = d.binding if d else {}
        held = d.held if d else {}
        extra = self._session_rows([s.id for s in active])
        out = []
        for s in sorted(active, key=lambda x: x.started_at):
            limit = st.limits.get((s.charger_id, s.connector_idx))
            kind, vehicle_id, fleet_id = extra.get(s.id, ("charging", None, None))
            out.append(SessionView(
                session_id=s.id, charger_id=s.charger_id, idx=s.connector_idx,
                allocated_kw=round(limit if limit is not None else allocations.get(s.id, 0.0), 3),
                vehicle_max_kw=s.vehicle_max_kw, consumed_kw=round(s.power_kw, 3),
                source="hardware", kind="v2g" if kind == "v2g" else "charging",
                started_at=s.started_at, energy_kwh=round(s.energy_kwh, 4),
                cost_eur=round(s.cost_eur, 4),
                binding=bindings.get(s.id), vehicle_id=vehicle_id, fleet_id=fleet_id,
                held=held[s.id].as_dict() if s.id in held else None,
            ))  # fmt: skip
        return out

    def _session_rows(self, ids: list[str]) -> dict[str, tuple[str, str | None, str | None]]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self.store.execute(
            f"SELECT id, kind, vehicle_id, fleet_id FROM sessions WHERE id IN ({marks})", ids
        ).fetchall()
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def devices(self) -> list[DeviceView]:
        st = self.state
        s = st.settings
        now = time.time()
        out = []
        health = st.device_health()
        for dev in s.devices:
            h = health.get(dev.name)
            if h is None:
                continue
            state = link_state(h, s.control.stale_after_s, now)
            endpoint = dev.endpoint
            if endpoint.startswith("rtu://"):
                endpoint += f"@{dev.baudrate}"
            endpoint = f"{endpoint}#{dev.unit_id}"
            ocpp = (st.devices.describe(dev.name)
                    if dev.protocol == "ocpp" and st.devices is not None else None)  # fmt: skip
            if ocpp is not None:
                endpoint = f"ocpp://{ocpp['chargePointId']}"
            out.append(DeviceView(
                name=dev.name, kind=dev.kind, endpoint=endpoint, state=state,
                latency_ms_p50=h.latency_p50_ms, latency_ms_p99=h.latency_p99_ms,
                errors=dict(h.errors), last_error=h.last_error,
                last_ok=_iso_ts(h.last_ok_ts), missing=getattr(h, "missing", "") or None,
                ocpp=ocpp,
            ))  # fmt: skip
        return out

    def ocpp_log(self, charge_point_id: str, limit: int) -> list[dict[str, Any]]:
        devices = self.state.devices
        log = devices.ocpp_log(charge_point_id, limit) if devices is not None else None
        if log is not None:
            return log
        raise NotFound(f"no OCPP charger {charge_point_id!r}")

    def dependencies(self) -> list[DependencyState]:
        deps = []
        views = self.devices()
        offline = [d.name for d in views if d.state == "offline"]
        stale = [d.name for d in views if d.state == "stale"]
        st = self.state
        modes = sorted(st.modes)
        if st.decision is None:
            deps.append(DependencyState("control", "degraded", "starting"))
        elif not st.healthy:
            deps.append(DependencyState("control", "down", "the last control cycle failed"))
        else:
            deps.append(DependencyState("control", "degraded" if modes else "ok",
                                        ", ".join(modes)))  # fmt: skip
        if offline or stale:
            detail = "; ".join(p for p in (
                f"offline: {', '.join(offline)}" if offline else "",
                f"stale: {', '.join(stale)}" if stale else "") if p)  # fmt: skip
            deps.append(DependencyState("devices", "degraded", detail))
        else:
            deps.append(DependencyState("devices", "ok", f"{len(views)} online"))
        deps.append(broker_state(self._uplink))
        try:
            self.store.execute("SELECT 1").fetchone()
            # Readable but refusing writes (disk full): control goes on, records wait.
            refused = st.store_error
            outbox_refused = self._uplink.store_error if self._uplink is not None else None
            if outbox_refused and not refused:
                refused = f"outbox: {outbox_refused} (messages dropped, see outbox.dropped)"
            deps.append(DependencyState("store", "degraded", refused) if refused
                        else DependencyState("store", "ok"))  # fmt: skip
        except Exception as exc:  # the health endpoint must answer when SQLite fails
            deps.append(DependencyState("store", "down", str(exc)))
        planner = st.energy.planner
        if planner is None:
            deps.append(DependencyState("planner", "disabled", "planner.enabled = false"))
        else:
            p = planner.status
            deps.append(DependencyState(
                "planner", "degraded" if p.last_error else "ok",
                p.last_error or f"{p.plans} plans, active={p.active}",
            ))  # fmt: skip
        return deps

    def uplink(self) -> UplinkView | None:
        if self._uplink is None:
            return None
        st = self._uplink.status
        if st.published != self._last_published:
            self._last_published = st.published
            self._last_ack_wall = time.time()
        return uplink_view(self._uplink, _iso_ts(self._last_ack_wall))

    # --- battery, plan and savings ----------------------------------------------------------

    def plan_view(self) -> dict[str, Any] | None:
        planner = self.state.energy.planner
        return planner.view(self.now()) if planner is not None else None

    def battery(self) -> dict[str, Any] | None:
        watch = self.state.energy.battery
        b = self.state.settings.station.battery
        if b is None:
            return None
        snap = self.state.snapshot
        report = watch.report(self.now()) if watch is not None else {}
        return {
            "soc": snap.battery.soc if snap and snap.battery else None,
            "power_kw": snap.battery.power_kw if snap and snap.battery else None,
            "soh": report.get("sohPct"),
            "cycles": report.get("equivalentFullCycles"),
            "throughput_kwh": report.get("throughputKwh"),
            "alerts": report.get("alerts", []),
            "maintenance": report.get("maintenance"),
            "in_dispatch": report.get("inDispatch", True),
            "capacity_kwh": b.capacity_kwh,
            "min_soc": b.min_soc,
            "max_charge_kw": b.max_charge_kw,
            "max_discharge_kw": b.max_discharge_kw,
        }

    def savings(self) -> dict[str, Any] | None:
        """Today's figures from the savings ledger (agent.energy.ledger_recorder), plus the stored
        totals since the station started keeping a ledger."""
        ledger = self.state.energy.ledger
        if ledger is None:
            return None
        today = ledger.summary()
        totals: dict[str, float] = {}
        for policy in ("actual", "uncontrolled"):
            row = self.store.execute(
                "SELECT COALESCE(SUM(import_kwh),0), COALESCE(SUM(export_kwh),0), "
                "COALESCE(SUM(energy_cost_eur),0), COALESCE(SUM(co2_kg),0), "
                "COALESCE(SUM(battery_discharge_kwh),0), COUNT(*), COALESCE(SUM(refill_eur),0)"
                " FROM ledger WHERE policy = ?",
                [policy],
            ).fetchone()
            # Closed days whose battery ended short carry their refill (ledger.refill_eur).
            totals[policy + "_cost"] = row[2] + row[6]
            if policy == "actual":
                totals.update(import_kwh=row[0], export_kwh=row[1], co2_kg=row[3],
                              battery_discharge_kwh=row[4], intervals=row[5])  # fmt: skip
        ev_kwh = self._ev_kwh()
        cost, baseline = totals["actual_cost"], totals["uncontrolled_cost"]
        supplied = totals["import_kwh"] - totals["export_kwh"]
        return {
            "day": today["day"],
            "today": today,
            "intervals": int(totals["intervals"]),
            "import_kwh": round(totals["import_kwh"], 4),
            "export_kwh": round(totals["export_kwh"], 4),
            "ev_kwh": round(ev_kwh, 4),
            "co2_kg": round(totals["co2_kg"], 4),
            "cost_eur": round(cost, 4),
            "baseline_cost_eur": round(baseline, 4),
            "savings_eur": round(baseline - cost, 4),
            "savings_pct": round(100 * (baseline - cost) / baseline, 3) if baseline > 0 else None,
            "peak_kw_today": today["peakKw"],
            "eur_per_ev_kwh": round(cost / ev_kwh, 4) if ev_kwh > 0 else None,
            # EV energy (charger counters) over the net energy the station drew (meter):
            # how much of what came in went into the EVs (the rest is base load and losses).
            "charging_efficiency": round(min(1.0, ev_kwh / supplied), 4) if supplied > 0 else None,
            "v2g_efficiency": None,  # no V2G energy is metered separately on this station
        }

    def _ev_kwh(self) -> float:
        # session_kwh is JSON {sessionId: kWh} (agent/store/schema.py): summed in SQLite.
        row = self.store.execute(
            "SELECT COALESCE(SUM(j.value), 0) FROM ledger, json_each(ledger.session_kwh) AS j "
            "WHERE ledger.policy = 'actual'"
        ).fetchone()
        return float(row[0])

    def _base_load(self) -> float | None:
        d = self.state.decision
        return round(d.budget.base_load_kw, 3) if d is not None else None

    # --- sessions -------------------------------------------------------------------------

    def create_session(self, new: NewSession) -> SessionView:
        raise NotSupported(
            "sessions on this station start when an EV is plugged in (connector state B/C)"
        )

    def report_consumption(self, session_id: str, consumed_kw: float) -> SessionView:
        self._known(session_id)
        raise NotSupported("power is measured by the charger on this station")

    def stop_session(self, session_id: str) -> None:
        try:
            self.commands.stop_session(session_id, "api")
        except KeyError:
            raise UnknownSession(f"unknown session id {session_id!r}") from None

    def _known(self, session_id: str) -> None:
        if not any(s.id == session_id for s in self.state.sessions):
            raise UnknownSession(f"unknown session id {session_id!r}")


def _iso_ts(ts: float | None) -> str | None:
    return None if ts is None else iso(datetime.fromtimestamp(ts, UTC))
