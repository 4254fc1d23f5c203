"""[[station.circuits]]: `sems config check` refuses broken trees and warns on odd fuses; the
control cycle shares under the fuses; fallbacks fit every fuse."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config.settings import AgentSettings, cross_check, warnings
from tests.agent.cycle_helpers import Station, settings

ROOT = Path(__file__).resolve().parents[2]
SEMS = Path(sys.executable).with_name("sems")
CP1_1, CP1_2, CP2_1 = ("CP1", 1), ("CP1", 2), ("CP2", 1)


def tree_settings(circuits, **chargers) -> AgentSettings:
    rows = [{"id": "CP1", "device": "cp1", "max_power_kw": 22.0, "connectors": 2, "circuit": "sub",
             "max_current_a": 32.0},
            {"id": "CP2", "device": "cp2", "max_power_kw": 22.0, "connectors": 1, "circuit": "sub",
             "phase_rotation": "L2L3L1"}]  # fmt: skip
    for row in rows:
        row.update(chargers.get(row["id"], {}))
    return settings(station={"circuits": circuits, "chargers": rows})


SUB = [{"id": "main", "max_current_a": 63.0}, {"id": "sub", "parent": "main", "max_current_a": 32.0}]


@pytest.mark.parametrize(("circuits", "chargers", "message"), [
    ([{"id": "sub", "parent": "main"}], {}, "station.circuits[0].parent: no circuit 'main'"),
    ([{"id": "a", "parent": "sub"}, {"id": "sub", "parent": "a"}], {},
     "station.circuits[0].parent: the circuits form a cycle through 'a'"),
    ([*SUB, {"id": "sub"}], {}, "station.circuits[2].id: duplicate circuit id 'sub'"),
    (SUB, {"CP2": {"circuit": "nowhere"}}, "station.chargers[1].circuit: no circuit 'nowhere'"),
    (SUB, {"CP2": {"phase_rotation": "L1L1L2"}}, "station.chargers[1].phase_rotation: must be"),
    ([{"id": "sub", "meter": "grid"}], {}, "station.circuits[0].meter: a metered circuit needs"),
    ([{"id": "sub", "max_current_a": 32.0, "meter": "nowhere"}], {},
     "station.circuits[0].meter: no [[devices]] entry named 'nowhere'"),
    ([{"id": "sub", "max_current_a": 32.0, "meter": "cp1"}], {},
     "station.circuits[0].meter: device 'cp1' is a charger, expected a meter"),
])  # fmt: skip
def test_config_check_refuses_broken_trees(circuits, chargers, message):
    problems = cross_check(tree_settings(circuits, **chargers))
    assert any(p.startswith(message) for p in problems), problems


def test_child_fuse_above_parent_is_a_warning_not_an_error():
    s = tree_settings([{"id": "main", "max_current_a": 25.0},
                       {"id": "sub", "parent": "main", "max_current_a": 32.0}])
    assert cross_check(s) == []
    assert warnings(s) == ["station.circuits[1].max_current_a: 32 A is above its parent "
                           "'main''s 25 A"]


def test_sems_config_check_prints_warnings_and_ok(tmp_path):
    toml = tmp_path / "agent.toml"
    toml.write_text("""
[station]
id = "T1"
grid_capacity_kw = 100
grid_meter = "grid"
pessimistic_base_load_kw = 20
[[station.circuits]]
id = "main"
max_current_a = 25
[[station.circuits]]
id = "sub"
parent = "main"
max_current_a = 32
[[station.chargers]]
id = "CP1"
device = "cp1"
max_power_kw = 22
circuit = "sub"
[[devices]]
name = "grid"
kind = "meter"
profile = "sim-meter"
endpoint = "tcp://127.0.0.1:1502"
[[devices]]
name = "cp1"
kind = "charger"
profile = "sim-charger"
endpoint = "tcp://127.0.0.1:1503"
""")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(ROOT / ".numba-cache"))
    done = subprocess.run([str(SEMS), "config", "check", str(toml)], capture_output=True,
                          text=True, timeout=120, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok\n"
    assert "warning: station.circuits[1].max_current_a: 32 A is above" in done.stderr
    toml.write_text(toml.read_text().replace('parent = "main"', 'parent = "mian"'))
    done = subprocess.run([str(SEMS), "config", "check", str(toml)], capture_output=True,
                          text=True, timeout=120, env=env, cwd=ROOT)
    assert done.returncode == 78
    assert "station.circuits[1].parent: no circuit 'mian'" in done.stderr


def test_fallbacks_fit_every_fuse_per_phase():
    """Every charger at its fallback, each on one phase (the worst case: 1-phase EVs), keeps
    the 32 A sub-board and the 63 A main board."""
    s = tree_settings(SUB)
    per_charger_a = {ch.id: s.fallback_kw(ch) * 1000 / 230 for ch in s.station.chargers}
    assert sum(per_charger_a.values()) <= 32.0 + 1e-9
    assert all(a > 0 for a in per_charger_a.values())


def test_control_cycle_shares_under_the_sub_board_fuse():
    """Three EVs under a 32 A sub-board on a station with kW to spare: the fuse, not the
    grid, holds them; each phase of the sub-board carries at most 32 A."""
    st = Station(cfg=tree_settings(SUB), base_kw=10.0)
    for key in (CP1_1, CP1_2, CP2_1):
        st.plug(key)
    for _ in range(12):
        d = st.cycle(follow=True)
    limits = [st.limits[k] for k in (CP1_1, CP1_2, CP2_1)]
    # 3-phase EVs: 32 A x 3 x 230 V = 22.08 kW over three sessions, 7.36 kW each
    assert sum(limits) <= 22.08 + 1e-6
    assert limits == pytest.approx([7.36, 7.36, 7.36], abs=0.02)
    assert set(d.result["binding"].values()) == {"circuit"}


def test_status_shows_each_circuit_load_per_phase_against_its_fuse():
    from agent.cli.commands.status import render
    from agent.control.tree import circuit_loads

    s = tree_settings(SUB, CP2={"phases": 1})  # CP2: one conductor, wired to L2
    loads = circuit_loads(s.station, {CP1_1: 7.36, CP1_2: 7.36, CP2_1: 3.68})
    assert loads == [
        {"id": "main", "parent": None, "max_current_a": 63.0, "max_power_kw": None,
         "current_a": [21.33, 37.33, 21.33], "power_kw": 18.4},
        {"id": "sub", "parent": "main", "max_current_a": 32.0, "max_power_kw": None,
         "current_a": [21.33, 37.33, 21.33], "power_kw": 18.4},
    ]  # fmt: skip
    view = {"station_id": "T1", "ts": "2026-12-04T17:00:00Z", "mode": "hardware", "cycles": 3,
            "grid_capacity_kw": 100.0, "grid_power_kw": 28.4, "ev_power_kw": 18.4,
            "base_load_kw": 10.0, "pv_power_kw": None, "battery_soc": None,
            "battery_power_kw": None, "connectors": [], "uplink": None, "circuits": loads}
    text = render(view)
    line = next(x for x in text.splitlines() if x.startswith("sub"))
    assert line.split() == ["sub", "main", "21.3", "37.3", "21.3", "32", "18.4", "-"]
