"""The control loop's uplink hook: its `enqueue(kind, payload)` calls become typed messages
(agent/uplink/messages.py) committed to the outbox.

What the loop hands over, and what goes out:
- `session_started` / `session_stopped` (agent.control.session_records, for hardware and
  API sessions alike): `sessions` started / stopped, with energy, peak, vehicle and fleet
  ids, cost and kind from the session's store row; `session_resumed` (an API session taken
  up again after a restart): `sessions` updated;
- `telemetry` (every telemetry interval): grid, PV, battery, each connector's limit in
  force, power and session, and `held` where the horizon plan holds its session;
- `health` (every health interval): a periodic `health`, plus a `sessions` "updated" for each
  active session (energy and peak so far; `held` as in telemetry): the tracker's and those of
  `follow_sessions`;
- `degraded_on` / `degraded_off`: a `health` with reason "change" at once;
- `savings` (agent.energy.ledger_recorder: every 15-minute interval and each day).
`watch()` also sends a "change" health when a device's link, the degraded modes, the battery
alarms or the planner's failing state change between two periodic reports.

Everything it reports of the running station comes from the one read model
(`agent.state.StationState`, given at construction): the last cycle's decision, limits in
force and active sessions, device health, the planner's and the battery watch's status.
`held` is the control loop's own `Decision.held` (the read model the local API and `sems`
serve too), converted, never worked out again here. The bridge never sees the loop.

Nothing here may stop the control loop: a payload that does not fit its model is logged
once per kind and dropped (the loop also guards each call).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from agent.control.links import link_state
from agent.uplink import messages as m

if TYPE_CHECKING:
    import sqlite_utils

    from agent.control.session_records import Session
    from agent.state.station_state import ActiveSession, StationState
    from agent.uplink import Uplink
    from allocator.guidance import Hold

log = logging.getLogger(__name__)

SESSION_COLUMNS = "kind, vehicle_id, fleet_id, cost_eur, discharged_kwh"


class UplinkBridge:
    """`UplinkHook` for the daemon, over the station's read model `state` (the loop is built
    with this hook and records into that same state, so the state is made first)."""

    def __init__(
        self,
        uplink: Uplink,
        state: StationState,
        db: sqlite_utils.Database,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.uplink = uplink
        self.state = state
        self.db = db
        self.now = now
        self.published: dict[str, int] = {}
        self._failed: set[str] = set()
        self._signature: tuple[Any, ...] | None = None
        self._disk_path = Path(state.settings.storage.db_path).parent
        # Active sessions besides the tracker's (the API-only station's), for "updated".
        self._session_sources: list[Callable[[], Iterable[Session]]] = []
        # Connectors besides the loop's (the API-only station's), for telemetry: dicts in
        # the shape of `StationState.telemetry()["connectors"]`, plus their "sessionId".
        self._connector_sources: list[Callable[[], Iterable[dict[str, Any]]]] = []

    def follow_sessions(self, active: Callable[[], Iterable[Session]]) -> None:
        """Also report these active sessions with every periodic health."""
        self._session_sources.append(active)

    def follow_connectors(self, connectors: Callable[[], Iterable[dict[str, Any]]]) -> None:
        """Also report these connectors in every telemetry message."""
        self._connector_sources.append(connectors)

    # --- UplinkHook ---------------------------------------------------------------------

    def enqueue(self, kind: str, payload: dict) -> None:
        try:
            batch = self._translate(kind, payload)
        except (ValidationError, KeyError, TypeError, ValueError) as exc:
            if kind not in self._failed:  # once per kind until it works again
                self._failed.add(kind)
                log.error("uplink: %s payload does not fit its message: %s", kind, exc)
            return
        self._failed.discard(kind)
        if batch:
            self.uplink.publish_many(batch)
            for msg in batch:
                self.published[msg.TOPIC] = self.published.get(msg.TOPIC, 0) + 1

    def _translate(self, kind: str, payload: dict) -> list[m.Message]:
        if kind in ("session_started", "session_stopped", "session_resumed"):
            event = {"session_started": "started", "session_stopped": "stopped"}.get(kind, "updated")
            return [self.session_event(event, payload)]
        if kind == "telemetry":
            return [self.telemetry(payload)]
        if kind == "health":
            return [self.health("periodic"), *self.session_updates()]
        if kind in ("degraded_on", "degraded_off"):
            return [self.health("change")]
        if kind == "savings":
            return [m.Savings.model_validate(payload)]
        log.debug("uplink: nothing to publish for %s", kind)
        return []

    # --- sessions -----------------------------------------------------------------------

    def session_event(
        self, event: str, s: dict[str, Any], held: Hold | None = None
    ) -> m.SessionEvent:
        row = self.db.execute(
            f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?", [s["id"]]
        ).fetchone()
        kind, vehicle_id, fleet_id, cost, discharged = row if row else ("charging", None, None, 0.0, 0.0)
        return m.SessionEvent(
            event=event,  # type: ignore[arg-type]
            session_id=s["id"],
            charger_id=s["charger_id"],
            connector_idx=s["connector_idx"],
            kind=kind if kind in ("charging", "v2g") else "charging",
            started_at=s["started_at"],
            stopped_at=s.get("stopped_at"),
            energy_kwh=round(max(0.0, s.get("energy_kwh") or 0.0), 4),
            discharged_kwh=round(max(0.0, discharged or 0.0), 4),
            peak_kw=round(max(0.0, s.get("peak_kw") or 0.0), 3),
            vehicle_id=vehicle_id,
            fleet_id=fleet_id,
            # The live figure when the tracker hands it over (the row lags by up to
            # persist_every_s), else the stored one (API sessions).
            cost_eur=round(s.get("cost_eur", cost) or 0.0, 4),
            reason=s.get("reason") if event == "stopped" else None,
            held=_held(held),
        )

    def session_updates(self) -> list[m.SessionEvent]:
        active: list[ActiveSession | Session] = list(self.state.sessions)
        decision = self.state.decision
        held: dict[str, Hold] = dict(decision.held) if decision is not None else {}
        for source in self._session_sources:
            active.extend(source())
        return [self.session_event("updated", s.public(), held.get(s.id)) for s in active]

    # --- telemetry ----------------------------------------------------------------------

    def telemetry(self, t: dict[str, Any]) -> m.Telemetry:
        """From `StationState.telemetry()`, with the limit in force and the session of each
        connector from the same read model."""
        decision = self.state.decision
        limits = self.state.limits
        sessions = (
            {(s.charger_id, s.connector_idx): s.id for s in decision.sessions} if decision else {}
        )
        held = decision.held if decision else {}
        snap = decision.snapshot if decision else None
        connectors = []
        for c in t.get("connectors", []):
            key = (c["chargerId"], c["idx"])
            limit = limits.get(key)
            sid = sessions.get(key)
            connectors.append(m.ConnectorReading(
                charger_id=c["chargerId"], idx=c["idx"], state=c.get("state"),
                limit_kw=round(limit if limit is not None else (c.get("limit") or 0.0), 3),
                power_kw=round(c.get("power") or 0.0, 3), session_id=sid,
                held=_held(held.get(sid)) if sid is not None else None,
            ))  # fmt: skip
        for source in self._connector_sources:
            connectors.extend(m.ConnectorReading(
                charger_id=c["chargerId"], idx=c["idx"], state=c.get("state"),
                limit_kw=round(c.get("limit") or 0.0, 3), power_kw=round(c.get("power") or 0.0, 3),
                session_id=c.get("sessionId"),
            ) for c in source())  # fmt: skip
        st = self.state.settings.station
        battery = t.get("battery")
        has_battery = st.battery is not None
        return m.Telemetry(
            grid=m.GridReading(
                power_kw=t.get("gridPower"),
                import_kwh=snap.grid_import_kwh if snap else None,
                export_kwh=snap.grid_export_kwh if snap else None,
                stale=t.get("gridPower") is None,
            ),
            pv=None if st.pv_inverter is None else m.PvReading(
                power_kw=max(0.0, t.get("pvPower") or 0.0), stale=t.get("pvPower") is None,
            ),
            battery=None if not has_battery else m.BatteryReading(
                power_kw=battery["power"] if battery else 0.0,
                soc_pct=battery["soc"] if battery else None,
                setpoint_kw=t.get("batterySetpoint"),
                stale=battery is None,
            ),
            connectors=connectors,
            budget_kw=_budget(decision),
            power_cap_kw=decision.power_cap_kw if decision else None,
        )  # fmt: skip

    # --- health -------------------------------------------------------------------------

    def health(self, reason: str) -> m.Health:
        state = self.state
        devices = self.device_health()
        s = state.stats.summary()
        cycles = m.CycleStats(
            count=s["cycles"], overruns=s["overruns"], p50_ms=s["cycle_ms"]["p50"],
            p99_ms=s["cycle_ms"]["p99"], max_ms=s["cycle_ms"]["max"],
        )  # fmt: skip
        modes = sorted(state.modes)
        decision = state.decision
        cap = decision.power_cap_kw if decision else None
        planner = self._planner()
        battery = self._battery()
        return m.Health(
            reason=reason,  # type: ignore[arg-type]
            devices=devices,
            cycles=cycles,
            outbox=self.uplink.outbox_health(),
            uplink=self.uplink.uplink_health(),
            battery=battery,
            disk=self._disk(),
            planner=planner,
            power_cap_kw=cap,
            degraded=modes,
        )

    def device_health(self) -> list[m.DeviceHealth]:
        settings = self.state.settings
        kinds = {d.name: d.kind for d in settings.devices}
        stale_after = settings.control.stale_after_s
        now = time.time()
        out = []
        for name, h in sorted(self.state.device_health().items()):
            state = link_state(h, stale_after, now)
            link = "ok" if state == "online" else state  # the MQTT contract's word
            out.append(m.DeviceHealth(
                id=name, kind=kinds.get(name, "unknown"), link=link,  # type: ignore[arg-type]
                errors=int(sum(h.errors.values())), last_error=h.last_error,
            ))  # fmt: skip
        return out

    def _planner(self) -> m.PlannerHealth:
        planner = self.state.energy.planner
        if planner is None:
            return m.PlannerHealth(enabled=False)
        p = planner.status
        return m.PlannerHealth(
            active=p.active, plans=p.plans, failures=p.failures, last_plan_at=p.last_plan_at,
            last_solve_ms=p.last_solve_ms, last_error=p.last_error,
        )  # fmt: skip

    def _battery(self) -> m.BatteryHealth | None:
        watch = self.state.energy.battery
        if watch is None:
            return None
        r = watch.report(self.now())
        snap = self.state.snapshot
        soc = snap.battery.soc if snap is not None and snap.battery is not None else None
        return m.BatteryHealth(
            soh_pct=min(100.0, max(0.0, r["sohPct"])), alarms=[str(a) for a in r["alerts"]],
            soc_pct=soc, equivalent_full_cycles=r["equivalentFullCycles"],
            in_dispatch=r["inDispatch"],
        )  # fmt: skip

    def _disk(self) -> m.DiskHealth | None:
        try:
            usage = shutil.disk_usage(self._disk_path)
        except OSError:
            return None
        return m.DiskHealth(free_bytes=usage.free, total_bytes=usage.total)

    # --- health on change ---------------------------------------------------------------

    def signature(self) -> tuple[Any, ...]:
        """What a "change" health is sent for (not the uplink's own connection: during an
        outage that would only fill the outbox with reports of the outage)."""
        energy = self.state.energy
        links = tuple((d.id, d.link) for d in self.device_health())
        alarms = tuple(energy.battery.alerts) if energy.battery is not None else ()
        failing = energy.planner.status.last_error is not None if energy.planner else False
        return (links, tuple(sorted(self.state.modes)), alarms, failing)

    def check(self) -> bool:
        """Publish a "change" health if the signature moved since the last check."""
        sig = self.signature()
        changed = self._signature is not None and sig != self._signature
        self._signature = sig
        if changed:
            self.uplink.publish(self.health("change"))
            self.published["health"] = self.published.get("health", 0) + 1
        return changed

    async def watch(self, stop: asyncio.Event, every_s: float = 1.0) -> None:
        """Look for changes every `every_s` until `stop` is set."""
        while not stop.is_set():
            try:
                self.check()
            except Exception:
                log.exception("uplink: health change check failed")
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel.
            try:
                async with asyncio.timeout(every_s):
                    await stop.wait()
            except TimeoutError:
                pass


def _held(hold: Hold | None) -> m.Held | None:
    """The plan's reason as the wire's `held`: the local API's dict (`Hold.as_dict()`, same
    rounding, same names in snake_case) validated into the camelCase model. One that does
    not fit is left out (logged), never the connector's or session's whole message."""
    if hold is None:
        return None
    try:
        return m.Held.model_validate(hold.as_dict())
    except ValidationError as exc:
        if not _held_failed:  # once: it would repeat with every telemetry message
            _held_failed.append(True)
            log.warning("uplink: held left out, it does not fit its message: %s", exc)
        return None


_held_failed: list[bool] = []


def _budget(decision: Any) -> float | None:
    if decision is None:
        return None
    request = decision.inputs
    return round(max(0.0, request.grid_capacity_kw - request.base_load_kw + request.pv_kw), 3)
