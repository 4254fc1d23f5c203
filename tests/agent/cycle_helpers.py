"""Cycle-by-cycle test harness: hand-made snapshots in, the controller's decisions out.

No devices: the test plays the chargers by feeding back the limits the controller wrote
(a charger reports the limit it holds), which is what makes the sequences readable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.config.settings import AgentSettings
from agent.control.controller import Controller
from agent.control.decision import Decision
from agent.control.sessions import SessionTracker
from agent.model.clock import ManualClock
from agent.model.snapshot import BatteryState, ChargerState, ConnectorState, Snapshot
from agent.store import connect


def settings(**overrides) -> AgentSettings:
    station = {
        "id": "T1",
        "grid_capacity_kw": 100.0,
        "grid_meter": "grid",
        "pessimistic_base_load_kw": 20.0,
        "chargers": [
            {"id": "CP1", "device": "cp1", "max_power_kw": 50.0, "connectors": 2},
            {"id": "CP2", "device": "cp2", "max_power_kw": 50.0, "connectors": 1},
        ],
    }
    station.update(overrides.pop("station", {}))
    control = {
        "deadband_kw": 0.5,
        "headroom_margin_kw": 2.0,
        "cap_after_s": 1.0,
        "probe_margin_kw": 1.0,
        "probe_margin_fraction": 0.1,
        "max_pause_s": 10.0,
        "comm_timeout_s": 10,
        "refresh_fraction": 0.4,
        "base_load_window_s": 60.0,
    }
    control.update(overrides.pop("control", {}))
    devices = [
        {"name": "grid", "kind": "meter", "profile": "sim-meter", "endpoint": "tcp://127.0.0.1:1"},
        {
            "name": "cp1",
            "kind": "charger",
            "profile": "sim-charger",
            "endpoint": "tcp://127.0.0.1:2",
        },
        {
            "name": "cp2",
            "kind": "charger",
            "profile": "sim-charger",
            "endpoint": "tcp://127.0.0.1:3",
        },
        {"name": "bms", "kind": "battery", "profile": "sim-bms", "endpoint": "tcp://127.0.0.1:4"},
        {
            "name": "inv",
            "kind": "inverter",
            "profile": "sim-inverter",
            "endpoint": "tcp://127.0.0.1:5",
        },
    ]
    return AgentSettings(station=station, control=control, devices=devices, **overrides)


@dataclass
class Station:
    """The chargers' side of the conversation: connector states, draws and held limits."""

    cfg: AgentSettings = field(default_factory=settings)
    clock: ManualClock = field(default_factory=ManualClock)
    base_kw: float = 30.0
    pv_kw: float | None = None
    battery: BatteryState | None = None
    grid_stale: bool = False
    unreachable: set[str] = field(default_factory=set)
    states: dict[tuple[str, int], str] = field(default_factory=dict)
    draw: dict[tuple[str, int], float] = field(default_factory=dict)
    limits: dict[tuple[str, int], float] = field(default_factory=dict)
    hooks: dict = field(default_factory=dict)  # Controller keyword hooks (signals, guide...)
    # The grid meter's energy counters and the chargers' session counters (kWh), integrated
    # from the powers as time advances; counters=None makes the meter report none.
    import_kwh: float | None = 1000.0
    export_kwh: float | None = 50.0
    energy: dict[tuple[str, int], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.db = connect(":memory:")
        self.controller = Controller(self.cfg, SessionTracker(self.db, self.clock), **self.hooks)
        for ch in self.cfg.station.chargers:
            for i in range(1, ch.connectors + 1):
                self.limits[(ch.id, i)] = 0.0

    def plug(self, key, draw=0.0, state="C") -> None:
        self.states[key] = state
        self.draw[key] = draw

    def unplug(self, key) -> None:
        self.states[key] = "A"
        self.draw[key] = 0.0

    def snapshot(self) -> Snapshot:
        chargers = []
        for ch in self.cfg.station.chargers:
            conns = tuple(
                ConnectorState(
                    ch.id,
                    i,
                    self.states.get((ch.id, i), "A"),
                    self.draw.get((ch.id, i), 0.0),
                    self.energy.get((ch.id, i), 0.0),
                    None,
                    self.limits[(ch.id, i)],
                )  # fmt: skip
                for i in range(1, ch.connectors + 1)
            )
            chargers.append(ChargerState(ch.id, ch.id not in self.unreachable, conns))
        grid = self.base_kw + sum(self.draw.values()) - (self.pv_kw or 0.0)
        if self.battery is not None:
            grid -= self.battery.power_kw
        return Snapshot(self.clock.monotonic(), self.clock.now(),
                        None if self.grid_stale else grid, self.pv_kw, self.battery,
                        tuple(chargers), self.import_kwh, self.export_kwh)  # fmt: skip

    def grid_kw(self) -> float:
        grid = self.base_kw + sum(self.draw.values()) - (self.pv_kw or 0.0)
        return grid - (self.battery.power_kw if self.battery is not None else 0.0)

    def run_meters(self, seconds: float) -> None:
        """Integrate the meters over `seconds` at the present powers."""
        h = seconds / 3600.0
        grid = self.grid_kw()
        if self.import_kwh is not None and self.export_kwh is not None:
            self.import_kwh += max(grid, 0.0) * h
            self.export_kwh += max(-grid, 0.0) * h
        for key, kw in self.draw.items():
            if self.states.get(key) in ("B", "C", "D"):
                self.energy[key] = self.energy.get(key, 0.0) + kw * h
            else:
                self.energy[key] = 0.0

    def cycle(self, advance: float = 0.25, follow: bool = False) -> Decision:
        """One control cycle; every write and heartbeat succeeds. `follow`: each EV then
        draws its new limit (an EV that always takes what it is given)."""
        self.run_meters(advance)
        self.clock.advance(advance)
        d = self.controller.decide(self.snapshot())
        for w in d.plan.writes:
            if w.charger_id not in self.unreachable:
                self.limits[(w.charger_id, w.idx)] = w.kw
        ok = {(w.charger_id, w.idx): True for w in d.plan.writes}
        self.controller.commit(d, ok, dict.fromkeys(d.heartbeats, True), True)
        if follow:
            for key, state in self.states.items():
                if state == "C":
                    self.draw[key] = self.limits[key]
        return d

    def session_id(self, key) -> str:
        return self.controller.sessions.active[key].id
