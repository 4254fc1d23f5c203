"""The stationary battery's health in the daemon: BatteryHealth fed from the BMS each cycle.

Throughput and equivalent full cycles integrate the BMS power; SoH comes from the BMS when
it reports one; alerts (SoH below `soh_alert_pct`, cell temperature outside
`temp_min_c..temp_max_c`, cell voltage spread above `imbalance_max_v`) go to the health
report, and a change of alerts is logged once. Maintenance windows come from the cloud
(`battery.maintenance.schedule`, agent/store/signals.py): inside one the battery is out of
dispatch (`available(now)` is False: the controller counts on no battery and sets it idle,
the planner plans without it). Throughput is kept in the `meta` table across restarts.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from agent.config.settings import BatterySettings
from agent.energy.battery_health import BatteryHealth, HealthLimits

if TYPE_CHECKING:
    import sqlite_utils

    from agent.model.snapshot import Snapshot
    from agent.store.signals import Signals

log = logging.getLogger(__name__)

KEY = "battery.health"
MAX_GAP_S = 5.0  # not integrated across a longer gap (agent stalled or BMS stale)
PERSIST_EVERY_S = 300.0


class BatteryWatch:
    def __init__(
        self,
        settings: BatterySettings,
        db: sqlite_utils.Database | None = None,
        signals: Signals | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.signals = signals
        limits = HealthLimits(
            soh_alert=settings.soh_alert_pct / 100.0,
            temp_max_c=settings.temp_max_c,
            temp_min_c=settings.temp_min_c,
            imbalance_max_v=settings.imbalance_max_v,
        )
        # Without a nameplate capacity, cycles are counted against the rated power for 1 h.
        capacity = settings.capacity_kwh or settings.max_discharge_kw
        self.health = BatteryHealth(capacity_kwh=capacity, limits=limits)
        self.alerts: list[dict] = []
        self._last_t: float | None = None
        self._persisted_at = float("-inf")
        if db is not None:
            row = db.execute("SELECT value FROM meta WHERE key = ?", [KEY]).fetchone()
            if row is not None:
                try:
                    data = json.loads(row[0])
                    self.health.charged_kwh = float(data["chargedKwh"])
                    self.health.discharged_kwh = float(data["dischargedKwh"])
                    self.health.soh = float(data["soh"])
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("battery health not restored: %s", exc)

    def available(self, now: datetime) -> bool:
        """False inside a maintenance window (the battery is out of dispatch)."""
        if self.signals is None:
            return True
        return self.signals.battery_maintenance_at(now) is None

    def observe(self, snap: Snapshot) -> None:
        b = snap.battery
        if b is None:  # BMS stale: nothing integrated across the gap
            self._last_t = None
            return
        if self._last_t is not None and 0 < snap.t - self._last_t <= MAX_GAP_S:
            self.health.record_power(b.power_kw, (snap.t - self._last_t) / 3600.0)
        self._last_t = snap.t
        if b.soh_pct is not None:
            self.health.record_soh(b.soh_pct / 100.0)
        temps = [v for v in (b.temp_min_c, b.temp_max_c) if v is not None]
        volts = [v for v in (b.cell_v_min, b.cell_v_max) if v is not None]
        alerts = self.health.alerts(temps or None, volts if len(volts) == 2 else None)
        kinds = [(a["kind"], a["severity"]) for a in alerts]
        if kinds != [(a["kind"], a["severity"]) for a in self.alerts]:
            for a in alerts:  # logged once per change, not every cycle
                log.warning("battery alert: %s", a["message"])
        self.alerts = alerts
        if self.db is not None and snap.t - self._persisted_at >= PERSIST_EVERY_S:
            self._persisted_at = snap.t
            self.persist()

    def persist(self) -> None:
        if self.db is None:
            return
        h = self.health
        value = json.dumps(
            {"chargedKwh": h.charged_kwh, "dischargedKwh": h.discharged_kwh, "soh": h.soh}
        )
        try:
            with self.db.conn:
                self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", [KEY, value])
        except Exception:
            log.exception("battery health not stored")

    def report(self, now: datetime) -> dict[str, Any]:
        """The `battery` block of the health report."""
        h = self.health
        window = self.signals.battery_maintenance_at(now) if self.signals is not None else None
        return {
            "sohPct": round(h.soh * 100.0, 2),
            "equivalentFullCycles": round(h.equivalent_full_cycles, 3),
            "throughputKwh": round(h.throughput_kwh, 3),
            "alerts": list(self.alerts),
            "maintenance": None
            if window is None
            else {"id": window.id, "kind": window.kind, "end": window.end.isoformat()},
            "inDispatch": window is None,
        }
