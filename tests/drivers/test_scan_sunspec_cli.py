"""`sems scan --sunspec` in a subprocess against pysunspec2-built SunSpec images on
pymodbus's server: unit 1 maps at 40000, unit 2 at 0, unit 3 has no SunSpec map."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from modbus_regserver import RegisterServer, Unit
from sunspec_images import build, device_image

SEMS = [str(Path(sys.executable).parent / "sems")]


def test_scan_lists_models_per_unit_and_base() -> None:
    at_40000 = device_image([build(1), build(103), build(160), build(124), build(802)], 40000)
    at_0 = device_image([build(1), build(213)], 0)
    units = {1: Unit(holding=at_40000), 2: Unit(holding=at_0), 3: Unit()}

    async def main() -> subprocess.CompletedProcess[str]:
        async with RegisterServer(units, span=(0, 42000)) as srv:
            hostport = srv.endpoint.removeprefix("tcp://")
            return await asyncio.to_thread(
                subprocess.run, [*SEMS, "scan", "--sunspec", hostport, "--first", "1",
                                 "--last", "3", "--timeout", "0.5", "--json"],
                capture_output=True, text=True, timeout=60, env=dict(os.environ))

    r = asyncio.run(main())
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["models"]
    got = [(x["unit"], x["base"], x["model"], x["name"], x["length"]) for x in rows]
    assert got == [
        (1, 40000, 1, "common", 66), (1, 40000, 103, "inverter_three_phase", 50),
        (1, 40000, 160, "mppt", 8 + 3 * 20), (1, 40000, 124, "storage_basic", 24),
        (1, 40000, 802, "battery", 62),
        (2, 0, 1, "common", 66), (2, 0, 213, "ac_meter_abcn_float", 124),
    ]
    assert rows[1]["address"] == 40002 + 66 + 2  # where model 103's ID register is


def test_scan_sunspec_bad_address_is_one_line() -> None:
    r = subprocess.run([*SEMS, "scan", "--sunspec", "host:notaport"], capture_output=True,
                       text=True, timeout=60, env=dict(os.environ))
    assert r.returncode != 0 and "--sunspec" in r.stderr and "Traceback" not in r.stderr
