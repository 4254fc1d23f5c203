"""The demo's script: what happens in its first seconds so that the point shows at once.

The scenario's own EVs arrive as the day goes; on top of them the demo stages, as soon as
the agent is running:

  0 s  a rush: two fast EVs arrive on free DC connectors, so the chargers want more than
       the grid connection gives without the battery -> the battery discharges to shave
       the peak; and a nearly full EV (tapering above 80 % SoC) on a charger that cannot
       tell the EV's maximum (IEC 61851 signalling), so it draws less than it is offered:
       the agent caps it near its draw (binding "cap") after `cap_after_s`, freeing the
       rest for the others;
  5 s  the grid operator cuts the connection to half its capacity, sent to the agent's
       local API (POST /station/config, as the cloud's station.config.set does) -> the
       sessions share what is left (binding "station") and the simulator's grid import
       is under the new limit within a cycle or two.

The acts only plug EVs and send the cut; every decision is the agent's. Each act records
what it did, and `Witness` what the simulator and the agent showed, for the summary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

RUSH_KW = 150.0  # the fast EVs' own maximum
FULL_KW = 50.0  # a nearly full EV: rated 50 kW, but tapering above 80 % SoC it draws less
FULL_SOC = 0.92
CUT_AT_S = 5.0  # wall seconds after the agent is running
CUT_SHARE = 0.5  # of the grid capacity
UNDER_TOLERANCE = 1.02  # import "under the cut": within 2 % (the meter's and ramp's noise)


@dataclass
class Witness:
    """What the demo saw, each with the wall second (after start) it was first seen."""

    first_seen: dict[str, float] = field(default_factory=dict)  # "binding:station", ...
    battery_max_discharge_kw: float = 0.0
    uncontrolled_peak_kw: float = 0.0
    cut_kw: float | None = None
    cut_at_cycle: int | None = None
    cut_applied_cycles: int | None = None  # agent cycles from the cut to the import under it
    cut_applied_wall_s: float | None = None
    peak_after_cut_kw: float = 0.0
    staged: list[str] = field(default_factory=list)  # what the acts did, in words

    def seen(self, what: str, wall_s: float) -> None:
        self.first_seen.setdefault(what, round(wall_s, 1))


class Acts:
    def __init__(self, sim: Any, api: Any, rated_kw: dict[str, float], *,
                 stage: bool = True) -> None:
        self.sim = sim  # SimProbe
        self.api = api  # ApiClient on the agent's socket
        self.rated_kw = rated_kw  # charger id -> rated power (the scenario's station)
        self.w = Witness()
        self._stage = stage  # False: the witness only, no rush and no cut
        self._rush_done = False
        self._cut_sent_wall: float | None = None

    def step(self, wall_s: float, state: dict[str, Any], agent: dict[str, Any] | None) -> None:
        """Called with every simulator sample (and the agent's last station view)."""
        self._watch(wall_s, state, agent)
        if self._stage and not self._rush_done:
            self._rush_done = True
            self._rush(state)
        if self._stage and self.w.cut_kw is None and wall_s >= CUT_AT_S:
            self._cut(wall_s, state)

    # ---- acts ----------------------------------------------------------------------------
    def _rush(self, state: dict[str, Any]) -> None:
        busy = {c["chargerId"] for c in state["connectors"] if c["state"] != "A"}
        free = [c for c in state["connectors"] if c["state"] == "A"]
        # The largest idle chargers, one EV each (not sharing a charger's rating).
        free.sort(key=lambda c: (c["chargerId"] in busy, -self.rated_kw.get(c["chargerId"], 0.0)))
        picked: list[dict[str, Any]] = []
        for c in free:
            if all(p["chargerId"] != c["chargerId"] for p in picked):
                picked.append(c)
        picked = picked[:3]
        for n, c in enumerate(picked):
            fast = n < 2
            name = f"RUSH{n + 1}" if fast else "FULL1"
            self.sim.command({"cmd": "plug", "charger": c["chargerId"], "idx": c["idx"],
                              "session_id": name, "max_kw": RUSH_KW if fast else FULL_KW,
                              "capacity_kwh": 100.0, "soc": 0.15 if fast else FULL_SOC,
                              "energy_needed_kwh": 70.0 if fast else 5.0,
                              "announces_max": fast})  # fmt: skip
            what = (f"a {RUSH_KW:g} kW EV" if fast else
                    f"an EV at {FULL_SOC:.0%} that draws less than offered")
            self.w.staged.append(f"{name} plugged in at {c['chargerId']}#{c['idx']}: {what}")

    def _cut(self, wall_s: float, state: dict[str, Any]) -> None:
        from agent.cli.client import AgentUnreachable, ApiFailure

        try:
            config = self.api.get("/station/config")
            config.pop("baseLoad", None)  # measured by the meter: shown, never set
            cut = math.floor(float(config["gridCapacity"]) * CUT_SHARE / 10) * 10
            config["gridCapacity"] = float(cut)
            before = int(self.api.get("/api/v1/station")["cycles"])
            self.api.post("/station/config", config)
        except (AgentUnreachable, ApiFailure) as exc:
            self.w.cut_kw = 0.0  # not tried again
            self.w.staged.append(f"grid cut not applied: {exc}")
            return
        self.w.cut_kw = float(cut)
        self.w.cut_at_cycle = before
        self._cut_sent_wall = wall_s
        self.w.staged.append(f"grid connection cut to {cut:g} kW through the local API")

    # ---- watching ------------------------------------------------------------------------
    def _watch(self, wall_s: float, state: dict[str, Any], agent: dict[str, Any] | None) -> None:
        b = state.get("battery")
        if b is not None and b["power"] > 0.5:
            self.w.battery_max_discharge_kw = max(self.w.battery_max_discharge_kw, b["power"])
            self.w.seen("battery discharging", wall_s)
        wanted = sum(float(c["ev"]["acceptPower"]) for c in state["connectors"] if c.get("ev"))
        uncontrolled = float(state["baseLoad"]) - float(state["pvPower"]) + wanted
        self.w.uncontrolled_peak_kw = max(self.w.uncontrolled_peak_kw, uncontrolled)
        for c in (agent or {}).get("connectors", []):
            if c.get("binding") and c.get("session_id"):
                self.w.seen(f"binding:{c['binding']}", wall_s)
        grid = float(state["gridImport"])
        if self.w.cut_kw is not None and self._cut_sent_wall is not None:
            if self.w.cut_applied_cycles is None:
                if grid <= self.w.cut_kw * UNDER_TOLERANCE:
                    now = int(self.api.get("/api/v1/station")["cycles"])
                    self.w.cut_applied_cycles = now - int(self.w.cut_at_cycle or now)
                    self.w.cut_applied_wall_s = round(wall_s - self._cut_sent_wall, 2)
            else:
                self.w.peak_after_cut_kw = max(self.w.peak_after_cut_kw, grid)
