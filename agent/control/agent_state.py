"""The running agent as the uplink, the local API and the CLI read it (one cycle at a time)."""

from __future__ import annotations

from agent.config.settings import AgentSettings
from agent.control.decision import Decision
from agent.control.stats import CycleStats
from agent.model.snapshot import Snapshot


class AgentState:
    """Read-only view of the running agent for the uplink, the local API and the CLI.

    The loop replaces `decision` whole at the end of each cycle, so a reader on the same
    event loop always sees one consistent cycle."""

    def __init__(self, settings: AgentSettings, stats: CycleStats):
        self.settings = settings
        self.stats = stats
        self.decision: Decision | None = None
        self.modes: frozenset[str] = frozenset()
        self.healthy = False

    @property
    def snapshot(self) -> Snapshot | None:
        return self.decision.snapshot if self.decision else None

    def telemetry(self) -> dict:
        """Grid, PV, battery and each connector's limit and power (kW)."""
        d = self.decision
        if d is None:
            return {}
        snap = d.snapshot
        return {
            "gridPower": snap.grid_kw,
            "gridCapacity": self.settings.station.grid_capacity_kw,
            "pvPower": snap.pv_kw,
            "battery": None
            if snap.battery is None
            else {"soc": snap.battery.soc, "power": snap.battery.power_kw},
            "batterySetpoint": d.battery_kw,
            "connectors": [
                {
                    "chargerId": c.charger_id,
                    "idx": c.idx,
                    "state": c.state,
                    "power": c.power_kw,
                    "limit": d.targets.get((c.charger_id, c.idx)),
                }
                for c in snap.connectors()
            ],
            "modes": sorted(d.budget.modes),
        }

    def summary(self) -> str:
        """One line for systemd's STATUS= and `sems status`."""
        d = self.decision
        if d is None:
            return "starting"
        grid = "stale" if d.snapshot.grid_kw is None else f"{d.snapshot.grid_kw:.1f} kW"
        cs = self.stats.summary()["cycle_ms"]
        modes = f"; degraded: {', '.join(sorted(d.budget.modes))}" if d.budget.modes else ""
        return (
            f"grid {grid} of {self.settings.station.grid_capacity_kw:g} kW, "
            f"{len(d.sessions)} sessions, cycle p99 {cs['p99']:.1f} ms{modes}"
        )
