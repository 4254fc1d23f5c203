"""`sems config check` catches what `sems run` would die of, and `sems run` refuses the same
files with the same lines and exit 78 (never a traceback, which systemd would restart in a
loop). `--probe` reads the devices once and says why one does not answer."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest
import sim_agent

pytestmark = pytest.mark.timeout(120)

EXAMPLE = sim_agent.EXAMPLE.read_text()
REPO = sim_agent.REPO
SEMS = sim_agent.SEMS
env = sim_agent.example_env


def sems(tmp: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SEMS, *args], capture_output=True, text=True, env=env(tmp),
                          timeout=timeout, cwd=REPO)  # fmt: skip


def variant(tmp: Path, old: str, new: str) -> Path:
    assert old in EXAMPLE, old
    path = tmp / "agent.toml"
    path.write_text(EXAMPLE.replace(old, new, 1))
    return path


CASES = {
    "misspelt profile": ('profile = "sim-meter"', 'profile = "sim-metre"',
                         "devices[0].profile: ", "profile not found (shipped profiles: "),
    "profile of the wrong kind": ('profile = "sim-charger"', 'profile = "sim-meter"',
                                  "devices[3].profile: ",
                                  "'sim-meter' describes a meter, but 'cp1' is a charger"),
    "profile file missing": ('profile = "sim-bms"', 'profile = "/nonexistent/bms.toml"',
                             "devices[1].profile: ", "/nonexistent/bms.toml: profile not found"),
    "endpoint port out of range": ('endpoint = "tcp://127.0.0.1:5022"',
                                   'endpoint = "tcp://127.0.0.1:99999"', "devices[2].endpoint: ",
                                   "port"),
    "endpoint without a scheme": ('endpoint = "tcp://127.0.0.1:5020"', 'endpoint = "127.0.0.1:5020"',
                                  "devices[0].endpoint: ", "tcp://"),
    "phase switch back faster than it may switch": (
        "enabled = false                     # opt in per station\nhold_s = 60.0",
        "enabled = true\nhold_s = 600.0", "phase_switch: ", "must be >= hold_s (600)"),
    "TLS file missing": ('# tls_ca_file = "/etc/sems/mqtt-ca.pem"',
                         'tls_ca_file = "/nonexistent/ca.pem"', "mqtt.tls_ca_file: ",
                         "no such file /nonexistent/ca.pem"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_config_check_and_run_refuse_the_same_file_with_the_same_lines(tmp_path, case):
    old, new, key, words = CASES[case]
    path = variant(tmp_path, old, new)

    check = sems(tmp_path, "config", "check", str(path))
    assert check.returncode == 78 and check.stdout == ""
    lines = check.stderr.splitlines()
    assert any(ln.startswith(key) and words in ln for ln in lines), lines

    as_json = sems(tmp_path, "config", "check", str(path), "--json")
    assert as_json.returncode == 78
    result = json.loads(as_json.stdout)
    assert result["ok"] is False and result["problems"] == lines

    run = sems(tmp_path, "run", "--config", str(path))
    assert run.returncode == 78
    assert run.stderr.splitlines() == lines  # the same lines, nothing else: no traceback
    assert not (tmp_path / "agent.db").exists()  # refused before touching anything


def test_a_config_file_that_does_not_exist(tmp_path):
    missing = tmp_path / "nope.toml"
    for args in (("config", "check", str(missing)), ("run", "--config", str(missing))):
        done = sems(tmp_path, *args)
        assert (done.returncode, done.stderr.strip()) == (78, f"{missing}: no such file")


def test_a_database_the_daemon_cannot_open_is_exit_78_not_a_traceback(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    path = variant(tmp_path, "log_level", "log_level")
    e = dict(env(tmp_path), SEMS_STORAGE__DB_PATH=str(blocker / "agent.db"))
    run = subprocess.run([*SEMS, "run", "--config", str(path), "--json"], capture_output=True,
                         text=True, env=e, timeout=60, cwd=REPO)  # fmt: skip
    assert run.returncode == 78 and run.stdout == ""
    assert "Traceback" not in run.stderr
    problem = json.loads(run.stderr.splitlines()[-1])
    assert problem["level"] == "ERROR"
    assert problem["message"].startswith(f"storage.db_path: cannot open {blocker / 'agent.db'}")


@pytest.fixture
def sim():
    with sim_agent.example_sim() as ready:
        yield ready["endpoints"]


def test_probe_says_which_device_answers_and_why_the_others_do_not(tmp_path, sim):
    with socket.socket() as s:  # cp2: a port where nothing listens
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    path = sim_agent.example_config(sim, tmp_path / "agent.toml", CP2=f"127.0.0.1:{dead}")
    # The inverter under a wrong unit id.
    path.write_text(path.read_text().replace("unit_id = 3", "unit_id = 7"))

    done = sems(tmp_path, "config", "check", str(path), "--probe", "--json")
    assert done.returncode == 69, done.stderr
    result = {p["device"]: p for p in json.loads(done.stdout)["probe"]}
    assert [result[n]["ok"] for n in ("grid", "bms", "cp1")] == [True, True, True]
    inverter, cp2 = result["inverter"], result["cp2"]
    assert not inverter["ok"] and "unit 7 does not answer" in inverter["why"]
    assert inverter["next"] == f"sems scan --tcp {sim['inverter']['tcp']}"
    assert not cp2["ok"] and "connection refused" in cp2["why"]

    human = sems(tmp_path, "config", "check", str(path), "--probe")
    assert human.returncode == 69
    assert "inverter: " in human.stdout and "wrong unit id?" in human.stdout
    assert "grid: answers" in human.stdout and "ok" not in human.stdout.splitlines()
