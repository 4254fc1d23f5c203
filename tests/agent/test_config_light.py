"""`sems config check` loads the settings only: no web server, no JIT, no MQTT stack.

The settings layer (agent/config) imports nothing above it, so a technician's check of
/etc/sems/agent.toml starts quickly on a small station computer (issue 11)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "agent.example.toml"
HEAVY = ("fastapi", "uvicorn", "starlette", "numba", "llvmlite", "aiomqtt", "pymodbus", "httpx")

PROBE = """
import sys
from agent.cli import main
code = main(["config", "check", sys.argv[1]])
print(",".join(m for m in {heavy!r} if m in sys.modules))
sys.exit(code)
"""


def test_config_check_imports_no_heavy_stack():
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), str(EXAMPLE)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    # "ok", then the heavy modules loaded (none: an empty line, stripped away)
    assert out.stdout.strip().splitlines() == ["ok"], out.stdout
