"""scripts/system-deps.sh installs the Debian packages at the versions in
scripts/debian-packages.lock where the mirror still has them, else the candidate with a
warning (apt keeps no lock of its own). `--print` shows the choice without installing."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "system-deps.sh"

pytestmark = pytest.mark.skipif(shutil.which("apt-cache") is None, reason="no apt here")


def _print(lock: Path, *pkgs: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), "--print", *pkgs], capture_output=True,
                          text=True, check=True, env={"PATH": "/usr/bin:/bin",
                                                      "SYSTEM_DEPS_LOCK": str(lock)})


def _on_mirror(pkg: str) -> list[str]:
    out = subprocess.run(["apt-cache", "madison", pkg], capture_output=True, text=True).stdout
    return [line.split("|")[1].strip() for line in out.splitlines() if "|" in line]


def test_the_lock_names_every_package_the_script_installs():
    locked = dict(line.split("=", 1) for line in
                  (ROOT / "scripts" / "debian-packages.lock").read_text().splitlines()
                  if line and not line.startswith("#"))
    installs = set(re.findall(r"need\+=\((\w+)\)", SCRIPT.read_text()))
    assert installs == set(locked) == {"mosquitto", "openssl", "systemd"}


def test_a_locked_version_on_the_mirror_is_pinned_and_a_gone_one_falls_back_with_a_warning(tmp_path):
    versions = _on_mirror("openssl")
    if not versions:
        pytest.skip("apt lists no openssl (no package lists)")
    lock = tmp_path / "debian-packages.lock"
    lock.write_text(f"# test\nopenssl={versions[-1]}\nmosquitto=0.0-not-a-release\n")
    r = _print(lock, "openssl", "mosquitto")
    assert r.stdout.split() == [f"openssl={versions[-1]}", "mosquitto"]
    assert "mosquitto 0.0-not-a-release is not on the mirror" in r.stderr
    assert "openssl" not in r.stderr
