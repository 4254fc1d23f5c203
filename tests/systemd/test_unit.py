"""The unit file passes `systemd-analyze verify` (stderr empty) and scores <= 2.0."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "sems-agent.service"


@pytest.fixture(scope="module")
def analyze() -> str:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        # scripts/system-deps.sh installs Debian's systemd tools (as root) or says how.
        subprocess.run(["bash", str(ROOT / "scripts" / "system-deps.sh")], check=True)
        exe = shutil.which("systemd-analyze")
    assert exe, "systemd-analyze is required"
    return exe


@pytest.fixture
def unit(tmp_path) -> Path:
    # verify needs ExecStart's binary to exist: point it at this checkout's sems.
    sems = Path(sys.executable).parent / "sems"
    assert sems.exists()
    text = UNIT.read_text().replace("/opt/sems/.venv/bin/sems", str(sems))
    path = tmp_path / "sems-agent.service"
    path.write_text(text)
    return path


def test_verify_reports_nothing(analyze, unit):
    res = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    # verify prints parse errors on stderr and still exits 0: stderr must be empty.
    assert res.returncode == 0 and res.stderr == "", res.stderr


def test_security_exposure_at_most_2(analyze, unit):
    res = subprocess.run(
        [analyze, "security", "--offline=true", str(unit)], capture_output=True, text=True
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", res.stdout)
    assert m, res.stdout + res.stderr
    assert float(m.group(1)) <= 2.0


def test_required_settings_are_present():
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=always",
        "User=sems",
        "SupplementaryGroups=dialout",
        "StateDirectory=sems",
        "CacheDirectory=sems",
        "ConfigurationDirectory=sems",
        "RuntimeDirectory=sems",
        "Environment=NUMBA_CACHE_DIR=/var/cache/sems/numba",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "MemoryDenyWriteExecute=no",
    ):
        assert re.search(rf"^{re.escape(line)}$", text, re.M), line
    assert re.search(r"^WatchdogSec=\d+", text, re.M)
    assert re.search(r"^DeviceAllow=char-ttyUSB rw$", text, re.M)
    # the reason numba needs MemoryDenyWriteExecute off is written next to it
    assert re.search(r"#.*numba.*\n.*\nMemoryDenyWriteExecute=no", text)
