"""`session.stop` is idempotent by construction (docs/mqtt.md, Commands): a command
redelivered after a crash between the stop and its reply stops nothing a second time.

The stop is written by the control loop (its cycle's flush) with the connector's latch; an
agent restarted on the same store keeps the latch, so the EV still plugged in gets no new
session, and the redelivered command finds no active session: `not_found`, nothing written.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from cycle_helpers import Station

from agent.control.controller import Controller
from agent.control.sessions import SessionTracker
from agent.store import signals as sig
from agent.uplink.commands import Dispatcher
from agent.uplink.outbox import Outbox

CP1_1 = ("CP1", 1)


class TrackerTarget:
    """The daemon's `session.stop` (agent/uplink/commands.py `StationTarget` over
    agent/app/commands.py and `ControlLoop.stop_session`): the tracker's stop."""

    def __init__(self, tracker: SessionTracker) -> None:
        self.tracker = tracker

    async def stop_session(self, session_id: str, reason: str | None) -> dict[str, Any]:
        s = self.tracker.stop(session_id, reason or "cloud")
        return {"sessionId": s.id, "stoppedAt": s.stopped_at}

    async def apply_station_config(self, config: sig.StationConfig) -> None:
        raise AssertionError("not used")


def dispatcher(st: Station) -> Dispatcher:
    box = Outbox(st.db, station_id="T1", base_topic="sems/v1/T1")
    return Dispatcher(box, sig.Signals(st.db), base_topic="sems/v1/T1", version="t",
                      target=TrackerTarget(st.controller.sessions))  # fmt: skip


def handle(d: Dispatcher, body: dict[str, Any]) -> dict[str, Any]:
    asyncio.run(d.handle("session.stop", json.dumps(body).encode()))
    row = d.outbox.conn.execute("SELECT reply FROM uplink_commands WHERE id = ?", (body["id"],)).fetchone()
    return json.loads(row[0])


def stop_rows(st: Station, sid: str) -> list[tuple]:
    return st.db.execute(
        "SELECT status, stopped_at, stop_reason, latched FROM sessions WHERE id = ?", [sid]
    ).fetchall()


def test_a_redelivered_session_stop_after_a_restart_stops_nothing_twice():
    st = Station(base_kw=30.0)
    st.plug(CP1_1)
    for _ in range(3):
        st.cycle(follow=True)
    sid = st.session_id(CP1_1)
    cmd = {"id": "stop-1", "sessionId": sid}
    asyncio.run(TrackerTarget(st.controller.sessions).stop_session(sid, "cloud"))
    st.cycle(follow=True)  # the cycle's flush writes the stop row and its latch
    first = stop_rows(st, sid)
    assert len(first) == 1 and first[0][0] == "stopped" and first[0][3] == 1, first
    # Killed here: the stop is stored, its reply and id are not. Restarted on the same store,
    # the EV still plugged in:
    st.controller = Controller(st.cfg, SessionTracker(st.db, st.clock))
    for _ in range(3):
        d = st.cycle(follow=True)
    assert st.controller.sessions.active == {} and d.targets.get(CP1_1, 0.0) == 0.0
    reply = handle(dispatcher(st), cmd)  # the broker redelivers the command
    assert reply["status"] == "error" and reply["error"]["code"] == "not_found", reply
    st.cycle(follow=True)
    assert stop_rows(st, sid) == first  # not stopped again: same time, same reason
    assert st.db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 1  # none started
