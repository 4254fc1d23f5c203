"""Every `sems` command with `--json` prints JSON that parses, and nothing else, on stdout.

One real simulator (the shipped example's station) and one `sems run --json` against it;
then each command runs as a subprocess, as a script on a station would run it. `sems run
--json` itself: stdout stays empty and every stderr line is one JSON object. The list of
commands is checked against the CLI's own table, so a new command without a case fails.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest
import sim_agent

from agent.cli import COMMANDS

pytestmark = pytest.mark.timeout(300)

REPO = sim_agent.REPO
DAY = REPO / "hardware-sim" / "scenarios" / "reference-day.json"
SEMS = sim_agent.SEMS
REQUEST = {"stationId": "E", "gridCapacity": 100,
           "chargers": [{"id": "CP1", "maxPower": 200, "connectors": 2}],
           "sessions": [{"sessionId": "a", "connectorId": {"chargerId": "CP1", "idx": 1},
                         "vehicleMaxPower": 80},
                        {"sessionId": "b", "connectorId": {"chargerId": "CP1", "idx": 2},
                         "vehicleMaxPower": 150}]}  # fmt: skip


def test_every_command_prints_clean_json(tmp_path):
    with sim_agent.example_sim() as ready:
        _every_command(tmp_path, ready)
    # `sems run --json`: nothing on stdout, one JSON object per stderr line.
    assert (tmp_path / "run.out").read_text() == ""
    lines = (tmp_path / "run.err").read_text().splitlines()
    logged = [json.loads(line) for line in lines]
    assert any(e["message"].startswith("agent started for station STATION-1") for e in logged)
    assert {"time", "level", "logger", "message"} <= set(logged[0])


def _every_command(tmp_path: Path, ready: dict) -> None:
    endpoints = ready["endpoints"]
    config = sim_agent.example_config(endpoints, tmp_path / "agent.toml")
    env = sim_agent.example_env(tmp_path)
    agent = None
    try:
        out, err = (tmp_path / "run.out").open("w"), (tmp_path / "run.err").open("w")
        agent = subprocess.Popen([*SEMS, "run", "--config", str(config), "--json"], stdout=out,
                                 stderr=err, env=env, cwd=REPO)  # fmt: skip

        def sems(*args: str, codes: tuple[int, ...] = (0,)) -> object:
            done = subprocess.run([*SEMS, *args, "--json"], capture_output=True, text=True,
                                  env=env, timeout=120, cwd=REPO)  # fmt: skip
            assert done.returncode in codes, (args, done.returncode, done.stderr)
            return json.loads(done.stdout)  # the whole of stdout is one JSON document

        deadline = time.monotonic() + 90
        while True:
            assert agent.poll() is None, (tmp_path / "run.err").read_text()
            probe = subprocess.run([*SEMS, "devices", "--json"], capture_output=True, text=True,
                                   env=env, timeout=60, cwd=REPO)  # fmt: skip
            if probe.returncode == 0 and all(d["state"] == "online"
                                             for d in json.loads(probe.stdout)):
                break
            assert time.monotonic() < deadline, probe.stderr
            time.sleep(0.5)

        request = tmp_path / "request.json"
        request.write_text(json.dumps(REQUEST))
        meter = endpoints["meter"]["tcp"]
        covered = {
            "allocate": sems("allocate", str(request)),
            "status": sems("status"),
            "devices": sems("devices"),
            "sessions": sems("sessions"),
            "outbox": sems("outbox"),
            "read": sems("read", "--device", "grid", "--config", str(config), "--table", "input",
                         "--type", "float32", "0"),
            "write": sems("write", "--device", "cp1", "--config", str(config), "2", "1"),
            "scan": sems("scan", "--tcp", meter, "--first", "1", "--last", "2"),
            "plan": sems("plan", "--scenario", str(DAY), "--slots", "4"),
            "config": sems("config", "check", str(config)),
            "replay": sems("replay", "--scenario", str(DAY), "--policy", "uncontrolled"),
            "report": sems("report", "--day", "2026-06-17", "--db", str(_ledger_day(tmp_path)),
                           "--out", str(tmp_path / "day.html")),
            "demo": sems("demo", "--seconds", "3", "--no-broker", "--time-factor", "60"),
        }
        # No OCPP charger on this station: the agent answers "unknown charge point", and the
        # command prints one line on stderr and nothing on stdout (still clean for a script).
        ocpp = subprocess.run([*SEMS, "ocpp", "log", "CP1", "--json"], capture_output=True,
                              text=True, env=env, timeout=60, cwd=REPO)  # fmt: skip
        if ocpp.returncode == 0:
            covered["ocpp"] = json.loads(ocpp.stdout)
        else:
            assert ocpp.returncode == 1 and ocpp.stdout == "", ocpp
            assert ocpp.stderr.count("\n") == 1 and "Traceback" not in ocpp.stderr
            covered["ocpp"] = None
        assert covered["allocate"]["allocations"]
        assert covered["status"]["station_id"] == "STATION-1"
        assert covered["scan"]["found"][0]["unit"] == 1
        assert covered["config"]["ok"] is True
        assert covered["report"]["totals"]["intervals"] > 0
        assert set(covered) | {"run"} == set(COMMANDS)

        # The same commands for a technician: what limits a session in words, the broker.
        host, port = ready["control"].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as ctl:
            ctl.sendall(json.dumps({"cmd": "plug", "charger": "CP2", "idx": 1, "max_kw": 40,
                                    "capacity_kwh": 80, "soc": 0.2, "energy_needed_kwh": 30,
                                    "session_id": "EV1"}).encode() + b"\n")  # fmt: skip
            assert json.loads(ctl.makefile().readline())["ok"]
        deadline = time.monotonic() + 30
        while True:
            shown = subprocess.run([*SEMS, "status"], capture_output=True, text=True, env=env,
                                   timeout=60, cwd=REPO).stdout  # fmt: skip
            if "the vehicle takes no more" in shown or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert re.search(r"^CP2#1\s+[BC]\s+\S{8}\s.*vehicle\s+the vehicle takes no more$", shown,
                         re.M), shown  # fmt: skip
        outbox = subprocess.run([*SEMS, "outbox"], capture_output=True, text=True, env=env,
                                timeout=60, cwd=REPO).stdout  # fmt: skip
        assert "broker mqtt.example.net:8883 (no TLS): DISCONNECTED" in outbox, outbox
    finally:
        if agent is not None:
            agent.terminate()
            assert agent.wait(30) == 0


def _ledger_day(tmp_path: Path) -> Path:
    """A station database holding a recorded day (tests/report's control-loop day)."""
    from tests.report.test_report import record_day

    db = tmp_path / "ledger.db"
    record_day(db)
    return db
