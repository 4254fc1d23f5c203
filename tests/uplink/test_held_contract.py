"""The `held` field of the MQTT contract (docs/mqtt.md, "held"): what the bridge makes of
every kind of `Hold` validates against the schemas the repo ships (docs/schemas/), carries
the local API's figures under camelCase names, and is absent, not null, when a session is
not held, so a message without it is byte for byte what it was before."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from agent.uplink import bridge
from agent.uplink import messages as m
from agent.uplink.bridge import _held
from allocator.guidance import Hold

ROOT = Path(__file__).resolve().parents[2]
ONE = datetime(2026, 6, 18, 1, 0, tzinfo=UTC)
LEAVES = datetime(2026, 6, 18, 6, 30, tzinfo=UTC)
TS = datetime(2026, 6, 17, 20, 7, 12, tzinfo=UTC)

HOLDS = [
    Hold(reason="price", planned_kw=0.0, max_kw=50.0, until=ONE, departure=LEAVES,
         due_kwh=42.2, price_now=0.31, price_then=0.12, peak_kw=80.0),
    Hold(reason="price", planned_kw=0.0, max_kw=22.0, departure=LEAVES, due_kwh=30.0,
         open_ended=True, price_now=0.31, worth=0.2234567),
    Hold(reason="peak", planned_kw=21.4321, max_kw=50.0, departure=LEAVES, due_kwh=40.0,
         price_now=0.25, peak_kw=180.3, demand_charge=15.0),
    Hold(reason="peak", planned_kw=3.0, max_kw=22.0, peak_kw=60.0),  # arrived after the plan
    Hold(reason="schedule", planned_kw=0.0, max_kw=22.0, departure=LEAVES, due_kwh=0.0),
    Hold(reason="v2g", planned_kw=-11.0, max_kw=22.0, until=ONE, departure=LEAVES, due_kwh=30.0),
    Hold(reason="grid", planned_kw=5.0, max_kw=22.0, limit_kw=70.0),
    Hold(reason="charger", planned_kw=0.0, max_kw=22.0, limit_kw=50.0),
    Hold(reason="plan", planned_kw=3.0, max_kw=22.0, departure=LEAVES, due_kwh=12.0),
]  # fmt: skip


def schema(name: str) -> dict[str, Any]:
    return json.loads((ROOT / "docs" / "schemas" / f"{name}.json").read_text())


def wire(msg: m.Message) -> dict[str, Any]:
    """The message as the cloud receives it (the outbox's envelope around the body)."""
    return json.loads(m.envelope_json(msg.SCHEMA, "ST-1", 7, TS, msg.body_json()))


def telemetry(held: Hold | None) -> m.Telemetry:
    return m.Telemetry(grid=m.GridReading(power_kw=50.0), connectors=[
        m.ConnectorReading(charger_id="CP1", idx=1, state="C", limit_kw=0.0, power_kw=0.0,
                           session_id="s-1", held=_held(held)),
        m.ConnectorReading(charger_id="CP1", idx=2, state="C", limit_kw=22.0, power_kw=21.9,
                           session_id="s-2"),
    ])  # fmt: skip


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.title() for w in rest)


@pytest.mark.parametrize("hold", HOLDS, ids=[f"{h.reason}-{i}" for i, h in enumerate(HOLDS)])
def test_every_hold_validates_and_carries_the_apis_figures(hold):
    t = wire(telemetry(hold))
    jsonschema.validate(t, schema("sems.telemetry.v1"))
    held = t["connectors"][0]["held"]
    api = {camel(k): v for k, v in hold.as_dict().items() if v is not None}
    for key in ("until", "departure"):  # the same instant, the wire's Z form
        if key in api:
            assert datetime.fromisoformat(held.pop(key)) == datetime.fromisoformat(api.pop(key))
    assert held == api
    assert "held" not in t["connectors"][1]
    s = wire(m.SessionEvent(event="updated", session_id="s-1", charger_id="CP1",
                            connector_idx=1, started_at=TS, held=_held(hold)))  # fmt: skip
    jsonschema.validate(s, schema("sems.session.v1"))
    assert s["held"]["reason"] == hold.reason


def test_not_held_is_absent_and_the_message_unchanged():
    body = telemetry(None).body_json()
    assert "held" not in body
    assert json.loads(body)["connectors"][0] == {
        "chargerId": "CP1", "idx": 1, "state": "C", "limitKw": 0.0, "powerKw": 0.0,
        "sessionId": "s-1"}  # fmt: skip
    assert _held(None) is None


def test_a_hold_that_does_not_fit_is_left_out_not_the_telemetry(caplog):
    bridge._held_failed.clear()
    odd = Hold(reason="because", planned_kw=0.0, max_kw=22.0)  # type: ignore[arg-type]
    t = wire(telemetry(odd))
    jsonschema.validate(t, schema("sems.telemetry.v1"))
    assert "held" not in t["connectors"][0] and t["connectors"][0]["sessionId"] == "s-1"
    wire(telemetry(odd))
    assert caplog.text.count("held left out") == 1  # once, not with every message


def test_the_schema_refuses_what_the_contract_does_not_say():
    t = wire(telemetry(HOLDS[0]))
    tschema = schema("sems.telemetry.v1")
    bad_reason = json.loads(json.dumps(t))
    bad_reason["connectors"][0]["held"]["reason"] = "because"
    missing = json.loads(json.dumps(t))
    del missing["connectors"][0]["held"]["plannedKw"]
    unknown = json.loads(json.dumps(t))
    unknown["connectors"][0]["held"]["why"] = "?"
    for payload in (bad_reason, missing, unknown):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(payload, tschema)


def test_the_documented_telemetry_example_validates():
    text = (ROOT / "docs" / "mqtt.md").read_text()
    block = re.search(r"### `telemetry`\s+```json\n(.*?)```", text, re.S)
    assert block, "docs/mqtt.md: no telemetry example"
    example = json.loads(block.group(1))
    jsonschema.validate(example, schema("sems.telemetry.v1"))
    assert any("held" in c for c in example["connectors"])
    block = re.search(r"### `held`.*?```json\n(.*?)```", text, re.S)
    assert block, "docs/mqtt.md: no held example"
    m.Held.model_validate(json.loads(block.group(1)))
