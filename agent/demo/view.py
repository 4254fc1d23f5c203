"""The demo's live table: the simulated station's truth beside what the agent decided."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.cli.commands._output import fmt, table
from agent.demo.observe import AgentView, Truth


@dataclass(frozen=True)
class Frame:
    truth: Truth
    agent: AgentView
    uplink: dict[str, int] | None  # None: no broker
    broker: str  # where the broker listens, or why there is none
    time_factor: float
    wall_s: float
    wall_total_s: float | None  # --seconds, or None (until Ctrl-C)


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m:02d}:{s:02d}"


def render(f: Frame) -> str:
    st = f.truth.last
    if st is None:
        return "waiting for the simulator..."
    cap = float(st["gridCapacity"])
    grid = float(st["gridImport"])
    total = f" / {_clock(f.wall_total_s)}" if f.wall_total_s is not None else "  (Ctrl-C stops)"
    lines = [
        f"sems demo  station {st['stationId']}  simulated {st['time'][11:19]} UTC "
        f"({f.time_factor:g}x)  elapsed {_clock(f.wall_s)}{total}",
        f"grid     {fmt(grid)} / {fmt(cap)} kW import ({grid / cap * 100:.0f} % of capacity)   "
        f"max {fmt(f.truth.max_import_kw)} kW   over capacity {f.truth.seconds_over:.1f} s simulated",
        f"site     base load {fmt(st['baseLoad'])} kW   PV {fmt(st['pvPower'])} kW",
    ]
    b = st.get("battery")
    if b is not None:
        lines.append(f"battery  SoC {b['soc'] * 100:.1f} %   power {fmt(b['power'])} kW "
                     f"(> 0 discharging)   setpoint {fmt(b['setpoint'])} kW")
    a = f.agent
    view = a.station
    if view is not None:
        c = view.get("cycle_ms") or {}
        lines.append(f"agent    cycles {view['cycles']}   cycle p50 {fmt(c.get('p50'), 2)} ms  "
                     f"p99 {fmt(c.get('p99'), 2)} ms  max {fmt(c.get('max'), 2)} ms   "
                     f"overruns {view['overruns']}"
                     + (f"   DEGRADED: {', '.join(view['degraded'])}" if view.get("degraded") else ""))
    else:
        lines.append(f"agent    {a.status or 'starting'}")
    lines.append(f"sessions started {a.started}   stopped {a.stopped}   "
                 f"energy {a.energy_kwh:.1f} kWh (agent's store)")
    if f.uplink is None:
        lines.append(f"uplink   {f.broker}")
    else:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(f.uplink.items())) or "none yet"
        lines.append(f"uplink   {sum(f.uplink.values())} messages published to {f.broker} ({kinds})")
    lines += ["", _connectors(st, view)]
    return "\n".join(lines)


def _connectors(st: dict[str, Any], view: dict[str, Any] | None) -> str:
    agent = {(c["charger_id"], c["idx"]): c for c in (view or {}).get("connectors", [])}
    rows = []
    for c in st["connectors"]:
        ev = c.get("ev")
        mine = agent.get((c["chargerId"], c["idx"]), {})
        rows.append([
            f"{c['chargerId']}#{c['idx']}", c["state"], ev["sessionId"] if ev else "-",
            f"{ev['soc'] * 100:.0f}" if ev else "-", c["limit"], c["power"],
            mine.get("binding") or "-",
        ])  # fmt: skip
    return table(["connector", "state", "EV", "SoC %", "limit kW", "power kW", "binding"], rows)
