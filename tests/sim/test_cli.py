"""`sems-sim` as a real subprocess: the ready line, the control port, clean exits."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ports import free_base_port
from tests.shared_files import REFERENCE_DAY

from .helpers import f32, run, tcp_client

SCENARIO = str(REFERENCE_DAY)
CLI = [sys.executable, "-c", "import sys; from hardware_sim.cli import main; sys.exit(main())"]


def start(*args: str) -> tuple[subprocess.Popen[str], dict]:
    proc = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 15.0)
    if not ready:
        proc.kill()
        pytest.fail("no ready line within 15 s")
    line = proc.stdout.readline()
    return proc, json.loads(line)


def control(address: str, *messages: dict) -> list[dict]:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        f = sock.makefile("rwb")
        replies = []
        for m in messages:
            f.write(json.dumps(m).encode() + b"\n")
            f.flush()
            replies.append(json.loads(f.readline()))
        return replies


def test_ready_line_control_and_clean_exit_on_sigterm() -> None:
    proc, ready = start("--station", SCENARIO, "--time-factor", "10")
    try:
        assert ready["ready"] is True and ready["stationId"] == "REF-SUMMER"
        ep = ready["endpoints"]
        assert set(ep["chargers"]) == {f"DC{i}" for i in range(1, 5)} | {f"AC{i}" for i in range(1, 7)}
        assert os.path.exists(ep["meter"]["rtu"])

        async def read() -> float:
            c = await tcp_client(ep["meter"]["tcp"])
            r = await c.read_input_registers(0, count=2, device_id=ep["meter"]["unit"])
            c.close()
            return f32(r.registers)

        replies = control(ready["control"],
                          {"cmd": "set", "base_load_kw": 50.0, "pv_kw": 0.0},
                          {"cmd": "plug", "charger": "AC1", "idx": 1, "max_kw": 11,
                           "capacity_kwh": 50, "soc": 0.3, "energy_needed_kwh": 20},
                          {"cmd": "fault", "device": "DC1", "fault": "exception"},
                          {"cmd": "state"},
                          {"cmd": "plug", "charger": "XX", "idx": 1, "max_kw": 11,
                           "capacity_kwh": 50, "soc": 0.3, "energy_needed_kwh": 20},
                          {"cmd": "fly"})
        assert [r["ok"] for r in replies] == [True, True, True, True, False, False]
        state = replies[3]["state"]
        assert state["faults"] == {"DC1": "exception"} and state["baseLoad"] == 50.0
        assert "XX" in replies[4]["error"] and "cmd" in replies[5]["error"]
        assert run(read) >= 50_000 - 1  # base load plus the AC EV, no PV
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None and "Traceback" not in proc.stderr.read()


def test_stop_command_and_toml_station_with_base_port(tmp_path: Path) -> None:
    station = tmp_path / "station.toml"
    station.write_text('[station]\nstation_id = "T9"\ngrid_capacity = 60.0\n'
                       '[[station.chargers]]\nid = "W1"\nmax_power = 11.0\n')
    base = free_base_port(3)  # three consecutive free ports (parallel workers take others)
    proc, ready = start("--station", str(station), "--no-rtu", "--base-port", str(base))
    try:
        assert ready["endpoints"]["meter"]["tcp"] == f"127.0.0.1:{base}"
        assert ready["endpoints"]["chargers"]["W1"]["tcp"] == f"127.0.0.1:{base + 1}"
        assert ready["control"] == f"127.0.0.1:{base + 2}"
        assert "rtu" not in ready["endpoints"]["meter"]
        assert control(ready["control"], {"cmd": "stop"}) == [{"ok": True, "stopping": True}]
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("content, suffix, message", [
    ("{", ".json", "not valid JSON"),
    ('{"gridCapacity": 100, "chargers": [{"id": "A", "maxPower": "x"}]}', ".json",
     "chargers[0].maxPower: must be a number"),
    ("grid_capacity = ", ".toml", "not valid TOML"),
    ('{"station": {"gridCapacity": 100}, "evs": [{"connectorId": {"chargerId": "Q"}}]}',
     ".json", "evs[0].connectorId.chargerId"),
])
def test_bad_station_file_is_one_clear_line(tmp_path: Path, content: str, suffix: str,
                                            message: str) -> None:
    path = tmp_path / f"bad{suffix}"
    path.write_text(content)
    done = subprocess.run([*CLI, "--station", str(path)], capture_output=True, text=True,
                          timeout=20)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
