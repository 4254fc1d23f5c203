"""`sems allocate` and `sems demo`'s option checks, run as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from allocator import allocate

ROOT = Path(__file__).resolve().parents[2]
SEMS = Path(sys.executable).with_name("sems")

ELECTRA = {"stationId": "E", "gridCapacity": 330,
           "chargers": [{"id": "CP1", "maxPower": 200, "connectors": 2},
                        {"id": "CP2", "maxPower": 200, "connectors": 2}],
           "sessions": [
               {"sessionId": "a", "connectorId": {"chargerId": "CP1", "idx": 1}, "vehicleMaxPower": 80},
               {"sessionId": "b", "connectorId": {"chargerId": "CP1", "idx": 2}, "vehicleMaxPower": 150},
               {"sessionId": "c", "connectorId": {"chargerId": "CP2", "idx": 1}, "vehicleMaxPower": 150}]}


def sems(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba-cache"))
    return subprocess.run([str(SEMS), *args], input=stdin, capture_output=True, text=True,
                          timeout=120, env=env, cwd=ROOT)


def test_allocate_file_prints_the_result_as_json(tmp_path: Path) -> None:
    path = tmp_path / "electra.json"
    path.write_text(json.dumps(ELECTRA))
    done = sems("allocate", str(path))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == allocate(ELECTRA)
    assert json.loads(done.stdout)["allocations"] == {"a": 80.0, "b": 120.0, "c": 130.0}


def test_allocate_stdin_array_and_table() -> None:
    second = dict(ELECTRA, gridCapacity=100)
    done = sems("allocate", "-", stdin=json.dumps([ELECTRA, second]))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [allocate(ELECTRA), allocate(second)]
    table = sems("allocate", "--table", "-", stdin=json.dumps(ELECTRA))
    assert table.returncode == 0, table.stderr
    rows = {line.split()[0]: line.split() for line in table.stdout.splitlines() if line.strip()}
    assert rows["b"][-2:] == ["120.00", "charger"]
    assert rows["c"][-2:] == ["130.00", "station"]


def bad_session() -> dict[str, Any]:
    request = json.loads(json.dumps(ELECTRA))
    request["sessions"][2]["connectorId"]["idx"] = 3
    return request


def test_allocate_answers_a_tree_request_with_currents_and_circuit() -> None:
    from tests.allocator.test_allocator_tree_cases import EXAMPLE_REQUEST, EXAMPLE_RESULT

    done = sems("allocate", "-", stdin=json.dumps(EXAMPLE_REQUEST))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == EXAMPLE_RESULT
    table = sems("allocate", "--table", "-", stdin=json.dumps(EXAMPLE_REQUEST))
    assert table.returncode == 0, table.stderr
    assert "19.2 / 0.0 / 0.0" in table.stdout and "circuit sub" in table.stdout


@pytest.mark.parametrize(("stdin", "args", "message"), [
    ('{"gridCapacity": 330, ', ["-"], "sems allocate: stdin: invalid JSON at line 1 column"),
    (json.dumps(bad_session()), ["-"],
     "sems allocate: sessions[2].connectorId.idx: connector 3 does not exist on charger CP2 (it has 2)"),
    (json.dumps([ELECTRA, dict(ELECTRA, gridCapacity="x")]), ["-"],
     "sems allocate: [1].gridCapacity: expected a number, got a string"),
    ("", ["/nonexistent/request.json"],
     "sems allocate: /nonexistent/request.json: cannot read: No such file or directory"),
    (json.dumps(dict(ELECTRA, circuits=[{"id": "sub", "parent": "main"}])), ["-"],
     "sems allocate: circuits[0].parent: unknown circuit main"),
], ids=["bad-json", "validation", "array-item", "missing-file", "tree"])
def test_allocate_invalid_input_exits_2_with_one_line(stdin: str, args: list[str], message: str) -> None:
    done = sems("allocate", *args, stdin=stdin)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith(message)
    assert done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--seconds", "-1"], "sems demo: --seconds: must be between 0 and 86400, got -1"),
    (["--time-factor", "0.5"], "sems demo: --time-factor: must be between 1 and 360, got 0.5"),
    (["--scenario", "/nonexistent/day.json"],
     "sems demo: --scenario: /nonexistent/day.json: cannot read (No such file or directory)"),
], ids=["seconds", "time-factor", "scenario"])
def test_demo_refuses_bad_options_before_starting_anything(args: list[str], message: str) -> None:
    """The live demo itself runs in tests/demo/; a user mistake is one line and exit 2,
    before any simulator or agent is started."""
    done = sems("demo", *args)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == message + "\n"
