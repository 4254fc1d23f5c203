"""One instance (issue 12, finding 7): a second `sems run` on the same state directory
exits at once with a clear message and touches nothing: the running agent's API socket,
database and control stay as they were."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from .harness import ROOT, Scenario

pytestmark = pytest.mark.timeout(90)


def test_a_second_agent_exits_and_changes_nothing(tmp_path):
    async def scenario() -> None:
        async with Scenario(tmp_path) as sc:
            await sc.start_charging()
            sock = os.stat(sc.config["api"]["socket_path"])
            files = {p.name: p.stat().st_ino for p in tmp_path.iterdir()}
            second = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "agent.cli", "run", "--config", str(sc.agent.config_path),
                env=sc.agent.env, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await asyncio.wait_for(second.communicate(), 60)
            assert second.returncode == 75, (second.returncode, err.decode()[-2000:])
            assert b"another sems agent is running on" in err
            assert b"Traceback" not in err
            after = os.stat(sc.config["api"]["socket_path"])
            assert (after.st_ino, after.st_mtime_ns) == (sock.st_ino, sock.st_mtime_ns)
            assert {p.name: p.stat().st_ino for p in tmp_path.iterdir()
                    if p.name in files} == files  # fmt: skip
            assert (await sc.api("GET", "/health")).status_code == 200
            await sc.run_for(1.0)
            sc.check_invariants()
            # The lock dies with its holder: after a kill -9 a new agent starts at once.
            await sc.agent.kill()
            await sc.agent.start()
            await sc.agent.wait_ready()

    asyncio.run(scenario())
