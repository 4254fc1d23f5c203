"""Stationary battery health: SoH, equivalent full cycles, throughput, alerts.

Pure logic the daemon feeds with BMS readings (agent/energy/battery_watch.py). Alerts are dicts
ready for the `health` topic. Maintenance windows are not kept here: they are cloud signals
(`battery.maintenance.schedule`, agent/store/signals.py), read by BatteryWatch.available.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class HealthLimits:
    soh_alert: float = 0.80  # alert below this state of health (fraction)
    temp_max_c: float = 45.0  # alert above this cell temperature
    temp_min_c: float = 0.0  # alert below this one (charging a cold cell plates lithium)
    imbalance_max_v: float = 0.05  # alert when max - min cell voltage exceeds this


@dataclass
class BatteryHealth:
    capacity_kwh: float  # nameplate
    limits: HealthLimits = field(default_factory=HealthLimits)
    charged_kwh: float = 0.0
    discharged_kwh: float = 0.0
    soh: float = 1.0

    @property
    def throughput_kwh(self) -> float:
        return self.charged_kwh + self.discharged_kwh

    @property
    def equivalent_full_cycles(self) -> float:
        """One cycle = one nameplate capacity charged and discharged."""
        return self.throughput_kwh / (2.0 * self.capacity_kwh)

    def record_power(self, battery_kw: float, dt_h: float) -> None:
        """Battery power (>0 discharges) held for dt_h hours."""
        if battery_kw >= 0:
            self.discharged_kwh += battery_kw * dt_h
        else:
            self.charged_kwh += -battery_kw * dt_h

    def record_soh(self, soh: float | None = None, measured_capacity_kwh: float | None = None,
                   ) -> None:
        """SoH from the BMS, or from a capacity test (measured / nameplate)."""
        if soh is None and measured_capacity_kwh is not None:
            soh = measured_capacity_kwh / self.capacity_kwh
        if soh is not None:
            self.soh = min(max(soh, 0.0), 1.0)

    def alerts(self, cell_temps_c: list[float] | None = None,
               cell_volts: list[float] | None = None) -> list[dict]:
        out = []
        lim = self.limits
        if self.soh < lim.soh_alert:
            out.append({"kind": "battery.soh", "severity": "warning",
                        "message": f"SoH {self.soh:.0%} below {lim.soh_alert:.0%}"})
        if cell_temps_c:
            hi, lo = max(cell_temps_c), min(cell_temps_c)
            if hi > lim.temp_max_c:
                out.append({"kind": "battery.temperature", "severity": "critical",
                            "message": f"cell at {hi:.1f} C above {lim.temp_max_c:.1f} C"})
            if lo < lim.temp_min_c:
                out.append({"kind": "battery.temperature", "severity": "warning",
                            "message": f"cell at {lo:.1f} C below {lim.temp_min_c:.1f} C"})
        if cell_volts and max(cell_volts) - min(cell_volts) > lim.imbalance_max_v:
            spread = max(cell_volts) - min(cell_volts)
            out.append({"kind": "battery.imbalance", "severity": "warning",
                        "message": f"cell voltage spread {spread * 1000:.0f} mV above "
                                   f"{lim.imbalance_max_v * 1000:.0f} mV"})
        return out
