"""Cloud commands: every command, idempotency, refusals, and malformed input at volume
(through the dispatcher and through a real Mosquitto)."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.properties import Properties

from agent.store import connect
from agent.store import signals as sig
from agent.uplink import Uplink
from agent.uplink.commands import COMMANDS, Dispatcher, RefusalLog
from agent.uplink.outbox import Outbox
from uplink.helpers import collecting, running
from uplink.helpers import settings as settings_for

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def at(minutes: float) -> str:
    return (NOW + timedelta(minutes=minutes)).isoformat()


class RecordingStation:
    """Stands in for the daemon (being built alongside): records what commands asked."""

    def __init__(self, fail_config: bool = False) -> None:
        self.stopped: list[tuple[str, str | None]] = []
        self.configs: list[sig.StationConfig] = []
        self.fail_config = fail_config

    async def stop_session(self, session_id: str, reason: str | None) -> dict[str, Any]:
        if session_id != "s-1":
            raise KeyError(session_id)
        self.stopped.append((session_id, reason))
        return {"sessionId": session_id, "energyKwh": 10.0}

    async def apply_station_config(self, config: sig.StationConfig) -> None:
        if self.fail_config:
            raise ValueError("chargers.0.maxPower: exceeds the fuse")
        self.configs.append(config)


STATION = {"stationId": "st-1", "gridCapacity": 400,
           "chargers": [{"id": "CP001", "maxPower": 200, "connectors": 2}]}

VALID: dict[str, dict[str, Any]] = {
    "ping": {},
    "station.config.set": {"config": STATION},
    "power.cap.set": {"capKw": 120, "start": at(-1), "end": at(60)},
    "power.cap.clear": {},  # every cap: the power.cap.set just before it
    "tariff.set": {"slots": [{"start": at(0), "end": at(15), "importEurKwh": 0.3,
                              "exportEurKwh": 0.05},
                             {"start": at(15), "end": at(30), "importEurKwh": 0.1}],
                   "demandChargeEurKw": 9.5},
    "carbon.set": {"slots": [{"start": at(0), "end": at(60), "gCo2Kwh": 210}]},
    "vehicle.schedule": {"vehicleId": "EV-7", "departure": at(240), "energyTargetKwh": 40},
    "v2g.session.start": {"sessionId": "s-1", "powerKw": 11, "end": at(120)},
    "v2g.session.stop": {"sessionId": "s-1"},
    "battery.maintenance.schedule": {"kind": "calibration", "start": at(60), "end": at(180)},
    "optimization.run": {"horizonH": 12, "objective": "carbon"},
    "session.stop": {"sessionId": "s-1", "reason": "cloud"},
}


def make(tmp_path, target=None) -> Dispatcher:
    db = connect(tmp_path / "cmd.db")
    box = Outbox(db, station_id="st-1", base_topic="sems/v1/st-1", clock=lambda: NOW)
    return Dispatcher(box, sig.Signals(db), base_topic="sems/v1/st-1", version="t",
                      target=target, clock=lambda: NOW)


def reply_of(d: Dispatcher, cmd_id: str) -> dict[str, Any]:
    row = d.outbox.conn.execute("SELECT reply FROM uplink_commands WHERE id = ?",
                                (cmd_id,)).fetchone()
    assert row is not None, f"no reply stored for {cmd_id}"
    return json.loads(row[0])


def send(d: Dispatcher, name: str, body: dict[str, Any] | bytes, **kw: Any) -> list:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return asyncio.run(d.handle(name, payload, **kw))


def test_every_command_is_covered():
    assert set(VALID) == set(COMMANDS)


def test_every_command_round_trip_and_effects(tmp_path):
    station = RecordingStation()
    d = make(tmp_path, station)
    for i, (name, body) in enumerate(VALID.items()):
        send(d, name, {"id": f"c{i}", **body})
        reply = reply_of(d, f"c{i}")
        assert reply["status"] == "ok", (name, reply)
        assert reply["commandId"] == f"c{i}" and reply["command"] == name
    s = d.signals
    assert s.active_power_cap(NOW) is None  # set (c2), then cleared (c3)
    send(d, "power.cap.set", {"id": "c-again", **VALID["power.cap.set"]})
    assert s.active_power_cap(NOW) == 120
    assert s.active_power_cap(NOW + timedelta(hours=2)) is None
    assert s.price_at(NOW + timedelta(minutes=20)).import_eur_kwh == 0.1
    assert s.demand_charge_eur_kw(NOW) == 9.5
    assert s.carbon_at(NOW) == 210
    assert [v.vehicle_id for v in s.vehicle_schedules(NOW)] == ["EV-7"]
    assert s.v2g_requests(NOW) == []  # started then stopped
    assert s.battery_maintenance_at(NOW + timedelta(minutes=90)).kind == "calibration"
    assert [r.objective for r in s.pending_optimizations()] == ["carbon"]
    assert station.stopped == [("s-1", "cloud")]
    assert station.configs[0].grid_capacity == 400
    # Persisted: a fresh Signals on the same database sees the same.
    again = sig.Signals(connect(tmp_path / "cmd.db"))
    assert again.active_power_cap(NOW) == 120
    assert again.station_config().chargers[0].id == "CP001"
    # Replies are in the outbox, in order, on reply/<id>.
    topics = [r.topic for r in d.outbox.fetch_after(0, 100)]
    assert topics == [f"sems/v1/st-1/reply/c{i}" for i in range(len(VALID))] + [
        "sems/v1/st-1/reply/c-again"]


def test_repeated_id_returns_stored_reply_and_does_nothing_twice(tmp_path):
    station = RecordingStation()
    d = make(tmp_path, station)
    body = {"id": "once", **VALID["session.stop"]}
    send(d, "session.stop", body)
    again = send(d, "session.stop", body)
    assert station.stopped == [("s-1", "cloud")]
    assert len(again) == 1 and again[0][0] == "sems/v1/st-1/reply/once"
    assert json.loads(again[0][1]) == reply_of(d, "once")
    assert d.outbox.stats().depth == 1  # the repeat committed nothing new


def test_failed_config_keeps_the_old_one(tmp_path):
    d = make(tmp_path, RecordingStation())
    send(d, "station.config.set", {"id": "a", **VALID["station.config.set"]})
    d.target = RecordingStation(fail_config=True)
    bigger = {**STATION, "gridCapacity": 800}
    send(d, "station.config.set", {"id": "b", "config": bigger})
    reply = reply_of(d, "b")
    assert reply["status"] == "error" and reply["error"]["code"] == "invalid"
    assert "maxPower" in reply["error"]["message"]
    assert d.signals.station_config().grid_capacity == 400


@pytest.mark.parametrize(
    ("name", "body", "code", "field"),
    [
        ("power.cap.set", {"capKw": -5, "end": at(10)}, "invalid", "capKw"),
        ("power.cap.set", {"capKw": 5, "start": at(10), "end": at(5)}, "invalid", "end"),
        ("tariff.set", {"slots": [{"start": at(0), "end": at(30), "importEurKwh": 0.1},
                                  {"start": at(15), "end": at(45), "importEurKwh": 0.2}]},
         "invalid", "slots"),
        ("ping", {"expires": at(-1)}, "expired", "expires"),
        ("ping", {"type": "session.stop"}, "invalid", "type"),
        ("ping", {"bogus": 1}, "invalid", "bogus"),
        ("warp.drive", {}, "unknown_command", "command"),
        ("session.stop", {"sessionId": "nope"}, "not_found", "sessionId"),
        ("v2g.session.stop", {"requestId": "none"}, "not_found", "requestId"),
        ("vehicle.schedule", {"vehicleId": "x", "departure": at(-5), "energyTargetKwh": 3},
         "invalid", "departure"),
    ],
)
def test_refusals_name_the_field(tmp_path, name, body, code, field):
    d = make(tmp_path, RecordingStation())
    send(d, name, {"id": "x1", **body})
    reply = reply_of(d, "x1")
    assert reply["status"] == "error" and reply["error"]["code"] == code, reply
    assert reply["error"]["message"].startswith(field), reply["error"]["message"]


def test_oversized_invalid_json_and_bad_ids(tmp_path):
    d = make(tmp_path)
    big = json.dumps({"id": "big", "pad": "x" * 70_000}).encode()
    send(d, "ping", big)
    assert reply_of(d, "big")["error"]["code"] == "too_large"
    # No id: nothing to reply to, unless a v5 response topic was given.
    out = send(d, "ping", b"{not json", response_topic="rt/1", correlation=b"c1")
    assert out[0][0] == "rt/1" and out[0][2] == b"c1"
    assert json.loads(out[0][1])["error"]["code"] == "invalid_json"
    # An id that cannot be a topic level: refused on reply/_invalid.
    send(d, "ping", {"id": "a/b#"})
    [row] = [r for r in d.outbox.fetch_after(0, 10) if r.topic.endswith("_invalid")]
    assert json.loads(row.payload)["error"]["code"] == "invalid_id"


def test_refusals_without_an_id_log_one_line_per_interval(tmp_path, caplog):
    """2,500 id-less commands in 50 s (a storm) give one line per minute with the count of
    those not logged one by one; every one is still counted as refused."""
    t = [0.0]
    d = make(tmp_path)
    d.refusal_log = RefusalLog(interval_s=60.0, monotonic=lambda: t[0])
    with caplog.at_level(logging.INFO, logger="agent.uplink.commands"):
        for i in range(2500):
            t[0] = i * 0.02
            send(d, "ping", b"{not json")
        t[0] = 61.0
        send(d, "ping", b"[1]")
    lines = [r.getMessage() for r in caplog.records if "without a usable id" in r.getMessage()]
    assert len(lines) == 2, lines
    assert "invalid_json" not in lines[0] and "payload:" in lines[0] and "more" not in lines[0]
    assert "2499 more refused in the 61 s before" in lines[1] and "must be a JSON object" in lines[1]
    assert d.refused == 2501


# --- malformed commands at volume ----------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
names = st.sampled_from([*COMMANDS, "nope", "", "ping/../x"])


@st.composite
def malformed(draw) -> tuple[str, bytes, str | None]:
    """(command name, payload, the id a reply must come back on or None)."""
    name = draw(names)
    n = draw(st.integers(0, 10**9))
    cmd_id = f"h{n}-{draw(st.integers(0, 10**6))}"
    kind = draw(st.sampled_from(["poison", "wrongtype", "expired", "raw", "notobject", "huge"]))
    body = dict(VALID.get(name, {}))
    if kind == "raw":
        return name, draw(st.binary(max_size=200)), None
    if kind == "notobject":
        return name, json.dumps(draw(json_values.filter(lambda v: not isinstance(v, dict)))).encode(), None
    if kind == "huge":
        return name, json.dumps({"id": cmd_id, "pad": "x" * 65_600}).encode(), cmd_id
    if kind == "poison":  # a field no command has, with any value
        body[f"zz{draw(st.text(max_size=5))}"] = draw(json_values)
    elif kind == "expired":
        body["expires"] = at(-draw(st.integers(1, 10**6)))
    else:  # a known field of the command with a value of the wrong type
        if body:
            key = draw(st.sampled_from(sorted(body)))
            body[key] = draw(st.sampled_from([[], {"a": [1]}]))  # wrong for every field
        else:
            body["expires"] = draw(st.sampled_from(["yesterday", 12, [], {}]))
    return name, json.dumps({"id": cmd_id, **body}).encode(), cmd_id


def test_malformed_commands_never_crash_and_always_get_an_error_reply(tmp_path):
    d = make(tmp_path, RecordingStation())
    loop = asyncio.new_event_loop()
    count = 0

    @settings(max_examples=1200, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(malformed())
    def check(case: tuple[str, bytes, str | None]) -> None:
        nonlocal count
        name, payload, cmd_id = case
        known = d.outbox.conn.execute(
            "SELECT 1 FROM uplink_commands WHERE id = ?", (cmd_id,)).fetchone()
        loop.run_until_complete(d.handle(name, payload, response_topic="rt"))
        count += 1
        if cmd_id is not None and not known:
            reply = reply_of(d, cmd_id)
            assert reply["status"] == "error", (name, payload[:200], reply)

    try:
        check()
    finally:
        loop.close()
    assert count >= 1000


def test_commands_through_the_broker_with_v5_response_topic(mosquitto, tmp_path):
    cases: list[tuple[str, bytes, str | None]] = []

    @settings(max_examples=300, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(malformed())
    def collect(case):
        cases.append(case)

    collect()
    uplink = Uplink.open(settings_for(mosquitto.port), tmp_path / "station.db", version="t",
                         target=RecordingStation(), clock=lambda: NOW)

    async def scenario() -> None:
        async with collecting(mosquitto.port, topic="sems/v1/station/reply/#") as cloud, \
                running(uplink):
            await cloud.wait_for(lambda: uplink.status.connected)
            await asyncio.sleep(0.3)  # its cmd/+ subscription follows the connect
            async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="ops",
                                      protocol=aiomqtt.ProtocolVersion.V5) as ops:
                for i, (name, body) in enumerate(VALID.items()):
                    props = Properties(paho.PacketTypes.PUBLISH)
                    props.ResponseTopic = "sems/v1/station/reply/rt"
                    props.CorrelationData = f"corr-{i}".encode()
                    await ops.publish(f"sems/v1/station/cmd/{name}",
                                      json.dumps({"id": f"ok{i}", **body}), qos=1,
                                      properties=props)
                want = {f"ok{i}" for i in range(len(VALID))}
                await cloud.wait_for(lambda: want <= {r.json.get("commandId") for r in cloud.got})
                for r in cloud.got:
                    assert r.json["status"] == "ok", r.json
                await cloud.wait_for(
                    lambda: {f"corr-{i}".encode() for i in range(len(VALID))}
                    <= {r.correlation for r in cloud.got if r.topic.endswith("/rt")}
                )
                for name, payload, _ in cases:
                    level = name.replace("/", "_") or "x"  # one topic level
                    await ops.publish(f"sems/v1/station/cmd/{level}", payload, qos=1)
                ids = {cid for _, _, cid in cases if cid is not None}
                await cloud.wait_for(lambda: ids <= {r.json.get("commandId") for r in cloud.got},
                                     timeout=30)
                assert all(r.json["status"] == "error" for r in cloud.got
                           if r.json.get("commandId") in ids)

    asyncio.run(scenario())
