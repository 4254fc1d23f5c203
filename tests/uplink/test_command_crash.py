"""A crash between a command's effect and its reply: a real SIGKILL, then redelivery.

A child process runs the dispatcher on a station database and is killed with SIGKILL at
the moment the reply's transaction commits (an SQLite trace callback sees the COMMIT that
follows the command-id row). Its effect, reply and id are one transaction, so the kill
leaves none of them; the broker then redelivers the command (QoS 1, no reply seen) to the
restarted agent, which runs it once and replies. Before, the effect was committed first:
a redelivered `power.cap.clear` found its cap gone and answered `not_found`.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agent.store import connect
from agent.store import signals as sig
from agent.uplink.commands import Dispatcher
from agent.uplink.outbox import Outbox

ROOT = Path(__file__).resolve().parents[2]
TOPIC = "sems/v1/st-1"

CHILD = """
import asyncio, os, signal, sys
from agent.store import connect
from agent.store import signals as sig
from agent.uplink.commands import Dispatcher
from agent.uplink.outbox import Outbox

db = connect(sys.argv[1])
box = Outbox(db, station_id="st-1", base_topic=sys.argv[2])
d = Dispatcher(box, sig.Signals(db), base_topic=sys.argv[2], version="t")
seen = []

def trace(statement):
    # Killed as the transaction holding the command's id row commits: effect and reply
    # written, nothing durable yet (under the old code the effect was committed before).
    if statement.lstrip().upper().startswith("INSERT OR REPLACE INTO UPLINK_COMMANDS"):
        seen.append(statement)
    elif seen and statement.strip().upper() == "COMMIT":
        os.kill(os.getpid(), signal.SIGKILL)

db.conn.set_trace_callback(trace)
asyncio.run(d.handle(sys.argv[3], sys.argv[4].encode()))
print("survived")
"""


def open_dispatcher(db_path: Path) -> Dispatcher:
    db = connect(db_path)
    box = Outbox(db, station_id="st-1", base_topic=TOPIC)
    return Dispatcher(box, sig.Signals(db), base_topic=TOPIC, version="t")


def killed_while_handling(db_path: Path, name: str, body: dict[str, Any]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(db_path), TOPIC, name, json.dumps(body)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stdout, proc.stderr[-2000:])


def handle(d: Dispatcher, name: str, body: dict[str, Any]) -> None:
    asyncio.run(d.handle(name, json.dumps(body).encode()))


def reply(d: Dispatcher, cmd_id: str) -> dict[str, Any] | None:
    row = d.outbox.conn.execute("SELECT reply FROM uplink_commands WHERE id = ?", (cmd_id,)).fetchone()
    return None if row is None else json.loads(row[0])


def published_replies(d: Dispatcher, cmd_id: str) -> int:
    return d.outbox.conn.execute(
        "SELECT COUNT(*) FROM outbox WHERE topic LIKE ?", (f"%reply/{cmd_id}",)
    ).fetchone()[0]


def cap_rows(d: Dispatcher) -> list[str]:
    rows = d.outbox.conn.execute("SELECT id FROM signals WHERE kind = 'power_cap' ORDER BY id")
    return [r[0] for r in rows]


def cap_body(cmd_id: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {"id": cmd_id, "capKw": 40.0, "start": now.isoformat(),
            "end": (now + timedelta(hours=1)).isoformat()}  # fmt: skip


def test_power_cap_set_killed_before_its_reply_runs_once_on_redelivery(tmp_path):
    db_path = tmp_path / "agent.db"
    open_dispatcher(db_path).outbox.conn.close()  # the schema, as the daemon creates it
    killed_while_handling(db_path, "power.cap.set", cap_body("cap-1"))

    d = open_dispatcher(db_path)  # the restarted agent
    assert cap_rows(d) == [] and reply(d, "cap-1") is None  # nothing of it survived
    handle(d, "power.cap.set", cap_body("cap-1"))  # redelivered
    handle(d, "power.cap.set", cap_body("cap-1"))  # and once more: answered from the store
    assert cap_rows(d) == ["power_cap:cap-1"]
    assert d.signals.active_power_cap(datetime.now(UTC)) == 40.0
    r = reply(d, "cap-1")
    assert r is not None and r["status"] == "ok", r
    assert published_replies(d, "cap-1") == 1


def test_power_cap_clear_killed_before_its_reply_is_answered_ok_on_redelivery(tmp_path):
    db_path = tmp_path / "agent.db"
    d = open_dispatcher(db_path)
    handle(d, "power.cap.set", cap_body("cap-1"))
    d.outbox.conn.close()
    clear = {"id": "clear-1", "capId": "cap-1"}
    killed_while_handling(db_path, "power.cap.clear", clear)

    d = open_dispatcher(db_path)
    assert cap_rows(d) == ["power_cap:cap-1"] and reply(d, "clear-1") is None
    handle(d, "power.cap.clear", clear)
    r = reply(d, "clear-1")
    # Under the old order the cap was already gone: "not_found" for a clear that worked.
    assert r is not None and r["status"] == "ok" and r["result"]["cleared"] == ["cap-1"], r
    assert cap_rows(d) == [] and d.signals.active_power_cap(datetime.now(UTC)) is None
    assert published_replies(d, "clear-1") == 1


def test_a_refused_effect_rolls_back_with_its_reply(tmp_path):
    # A stored handler that fails half-way leaves nothing behind: its writes roll back
    # and the error reply is committed on its own.
    d = open_dispatcher(tmp_path / "agent.db")
    handle(d, "power.cap.clear", {"id": "clear-x", "capId": "nope"})
    r = reply(d, "clear-x")
    assert r is not None and r["status"] == "error" and r["error"]["code"] == "invalid", r
