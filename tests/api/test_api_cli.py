"""The technician CLI in subprocesses: against the live API socket, and read/write/scan
against a real Modbus TCP server on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

# The installed console script: `python -m agent.cli` would load agent.cli twice (as
# __main__), so the UsageError the commands raise would not be the one main() catches.
SEMS = [str(Path(sys.executable).parent / "sems")]
ENV = {**os.environ, "NUMBA_CACHE_DIR": str(Path(__file__).resolve().parents[2] / ".numba-cache")}


def sems(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SEMS, *args], capture_output=True, text=True, timeout=60, env=ENV)


def test_status_sessions_devices_outbox(live):
    sid = live.http.post("/sessions", json={"connectorId": {"chargerId": "CP001", "idx": 1},
                                            "vehicleMaxPower": 50}).json()["session"]["sessionId"]
    live.wait_cycles(1)
    sock = str(live.socket)
    r = sems("status", "--socket", sock)
    assert r.returncode == 0, r.stderr
    assert "ELECTRA_PARIS_15" in r.stdout and "CP001#1" in r.stdout and sid[:8] in r.stdout
    r = sems("status", "--socket", sock, "--json")
    st = json.loads(r.stdout)
    assert st["grid_capacity_kw"] == 330 and st["connectors"][0]["limit_kw"] == 50
    r = sems("status", "--socket", sock, "--watch", "0.05", "--count", "2")
    assert r.returncode == 0 and r.stdout.count("ELECTRA_PARIS_15") == 2
    r = sems("sessions", "--socket", sock, "--json")
    assert [s["session_id"] for s in json.loads(r.stdout)] == [sid]
    r = sems("sessions", "--socket", sock, "--history", "5")
    assert r.returncode == 0 and sid[:8] in r.stdout
    r = sems("devices", "--socket", sock)
    assert r.returncode == 0 and "no devices configured" in r.stdout
    r = sems("outbox", "--socket", sock)
    assert r.returncode == 0 and "uplink not configured" in r.stdout
    r = sems("plan", "--socket", sock)  # an API-only station plans nothing on its own
    assert r.returncode == 1 and "no plan" in r.stderr and r.stdout == ""


def test_unreachable_agent_is_one_line_and_exit_69(tmp_path):
    r = sems("status", "--socket", str(tmp_path / "none.sock"))
    assert r.returncode == 69
    assert r.stderr.strip().count("\n") == 0 and "no agent socket" in r.stderr and "Traceback" not in r.stderr


def test_usage_errors_exit_2(live):
    r = sems("status", "--socket", str(live.socket), "--watch", "-1")
    assert r.returncode == 2 and "--watch" in r.stderr
    r = sems("read", "--tcp", "nohostport", "0")
    assert r.returncode == 2 and "--tcp" in r.stderr
    r = sems("read", "--tcp", "127.0.0.1:1", "zz")
    assert r.returncode == 2 and "address" in r.stderr
    r = sems("write", "--tcp", "127.0.0.1:1", "0", "abc")
    assert r.returncode == 2 and "values[0]" in r.stderr


@pytest.fixture
def modbus_server():
    """A real pymodbus TCP server on a free loopback port, unit ids 1 and 7."""
    from pymodbus.datastore import (
        ModbusDeviceContext,
        ModbusSequentialDataBlock,
        ModbusServerContext,
    )
    from pymodbus.server import ModbusTcpServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Block address 1 maps to protocol address 0 (see DESIGN.md's pymodbus trap).
    devices = {u: ModbusDeviceContext(hr=ModbusSequentialDataBlock(1, [0] * 200),
                                      ir=ModbusSequentialDataBlock(1, [0] * 200)) for u in (1, 7)}
    context = ModbusServerContext(devices=devices, single=False)
    loop = asyncio.new_event_loop()
    holder: dict[str, ModbusTcpServer] = {}

    async def serve() -> None:
        holder["server"] = ModbusTcpServer(context, address=("127.0.0.1", port))
        await holder["server"].serve_forever()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    for _ in range(100):  # bounded wait for the listener
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            threading.Event().wait(0.05)
    yield port
    asyncio.run_coroutine_threadsafe(holder["server"].shutdown(), loop).result(timeout=5)
    thread.join(timeout=5)


@pytest.mark.parametrize("typ,order,value", [("float32", "little", "11.5"), ("int32", "big", "-70000"),
                                             ("uint16", "big", "4242")])
def test_write_then_read_typed_values(modbus_server, typ, order, value):
    tcp = f"127.0.0.1:{modbus_server}"
    r = sems("write", "--tcp", tcp, "--unit", "7", "20", value, "--type", typ, "--word-order", order)
    assert r.returncode == 0, r.stderr
    r = sems("read", "--tcp", tcp, "--unit", "7", "20", "--type", typ, "--word-order", order, "--json")
    assert r.returncode == 0, r.stderr
    assert float(json.loads(r.stdout)["values"][0]["value"]) == float(value)
    # The same registers in the other word order read differently: the option is honoured.
    if typ != "uint16":
        other = "big" if order == "little" else "little"
        r = sems("read", "--tcp", tcp, "--unit", "7", "20", "--type", typ, "--word-order", other, "--json")
        assert float(json.loads(r.stdout)["values"][0]["value"]) != float(value)


def test_read_table_and_connection_refused(modbus_server):
    r = sems("read", "--tcp", f"127.0.0.1:{modbus_server}", "0x0", "--count", "3")
    assert r.returncode == 0 and "0000" in r.stdout
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    r = sems("read", "--tcp", f"127.0.0.1:{dead}", "0", "--timeout", "0.3")
    assert r.returncode == 1 and "Traceback" not in r.stderr and r.stderr.startswith("sems read:")


def test_scan_finds_unit_ids(modbus_server):
    # 1 s per id: this server runs in a thread of the test process, and its first answer can
    # take longer than a bus device's on a loaded machine (ids 2-6 answer at once anyway).
    r = sems("scan", "--tcp", f"127.0.0.1:{modbus_server}", "--first", "1", "--last", "8", "--json",
             "--timeout", "1.0")
    assert r.returncode == 0, r.stderr
    found = json.loads(r.stdout)["found"]
    # pymodbus's server answers unknown ids with exception 4 even with ignore_missing_devices
    # (DESIGN.md's trap), so only ids 1 and 7 answer with registers here; on a real bus the
    # others are silent and scan lists only 1 and 7.
    assert [f["unit"] for f in found if f["answer"] == "registers"] == [1, 7]


def test_scan_of_a_real_rs485_line_finds_exactly_the_devices_on_it(tmp_path):
    """The simulator serves its grid meter (unit 1) and BMS (unit 2) on one RTU line over a
    pseudo-terminal and stays silent for ids it does not own, as a real bus does."""
    station = {"stationId": "SCAN", "gridCapacity": 100,
               "chargers": [{"id": "CP1", "maxPower": 22, "connectors": 1}],
               "battery": {"capacity": 50, "maxChargePower": 20, "maxDischargePower": 20, "soc": 0.5}}
    path = tmp_path / "station.json"
    path.write_text(json.dumps(station))
    sim = subprocess.Popen([str(Path(sys.executable).parent / "sems-sim"), "--station", str(path)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert sim.stdout is not None
        ready = json.loads(sim.stdout.readline())
        line = ready["endpoints"]["meter"]["rtu"]
        assert ready["endpoints"]["bms"]["rtu"] == line
        r = sems("scan", "--rtu", line, "--baud", "19200", "--first", "1", "--last", "5",
                 "--timeout", "0.2", "--json")
        assert r.returncode == 0, r.stderr
        assert [f["unit"] for f in json.loads(r.stdout)["found"]] == [1, 2]
        r = sems("scan", "--rtu", line, "--first", "1", "--last", "3", "--timeout", "0.2")
        assert r.returncode == 0 and "Traceback" not in r.stderr
    finally:
        sim.terminate()
        sim.wait(timeout=10)
