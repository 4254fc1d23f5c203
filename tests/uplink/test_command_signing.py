"""Signed cloud commands ([mqtt] command_hmac_key_file) through a real Mosquitto: a signed
command runs; tampered, unsigned, expired, too-far and re-targeted ones are refused with a
code and change nothing; a refusal does not claim the command id."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import pytest

from agent.config.settings import AgentSettings, cross_check, load
from agent.uplink import Uplink
from agent.uplink.signing import sign
from uplink.helpers import collecting, running
from uplink.helpers import settings as settings_for

KEY = "k3y-for-tests-only-0123456789"


def key_file(tmp: Path, mode: int = 0o600) -> Path:
    path = tmp / "cmd-key"
    path.write_text(KEY + "\n")
    path.chmod(mode)
    return path


def signed(name: str, body: dict, station: str = "station") -> bytes:
    return sign(KEY.encode(), station, name, json.dumps(body).encode())


def in_(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def test_worked_example_in_docs_security_md():
    # The same figures as docs/security.md, computed the way an integrator would.
    body = b'{"id":"cap-0001","capKw":80,"end":"2026-01-01T12:00:00Z","exp":1767268800}'
    message = b"station-42\npower.cap.set\n" + body
    mac = hmac.new(b"0123456789abcdef0123456789abcdef", message, hashlib.sha256).hexdigest()
    assert mac == "4ed05bdeca3233441b62872e96a234b6db8c0699a0fbfeecef97f65c0dbb3845"
    assert sign(b"0123456789abcdef0123456789abcdef", "station-42", "power.cap.set", body) == \
        body[:-1] + b',"sig":"' + mac.encode() + b'"}'
    doc = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    assert mac in doc, "docs/security.md's worked example is out of date"


@pytest.mark.parametrize("mode", [0o640, 0o604])
def test_key_file_readable_by_others_is_refused(tmp_path, mode):
    with pytest.raises(ValueError, match="mqtt.command_hmac_key_file: .*group or others"):
        Uplink.open(settings_for(1883, command_hmac_key_file=key_file(tmp_path, mode)),
                    tmp_path / "s.db", version="t")


def test_signed_runs_and_bad_ones_change_nothing(mosquitto, tmp_path):
    uplink = Uplink.open(settings_for(mosquitto.port, command_hmac_key_file=key_file(tmp_path)),
                         tmp_path / "station.db", version="t")
    cap = {"capKw": 100, "end": in_(3600)}

    async def scenario() -> dict[str, dict]:
        async with collecting(mosquitto.port, topic="sems/v1/station/reply/#") as cloud, running(uplink):
            await cloud.wait_for(lambda: uplink.status.connected)
            async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="ops") as ops:
                async def send(name: str, payload: bytes) -> None:
                    await ops.publish(f"sems/v1/station/cmd/{name}", payload, qos=1)

                def replies() -> dict[str, dict]:
                    return {r.json["commandId"]: r.json for r in cloud.got if "commandId" in r.json}

                # Until the agent's cmd/+ subscription is in place a publish has no
                # subscriber: ping (signed) until one is answered, bounded.
                for i in range(100):
                    await send("ping", signed("ping", {"id": f"hello-{i}", "exp": in_(60)}))
                    try:
                        await cloud.wait_for(lambda: any(k.startswith("hello") for k in replies()), 0.5)
                        break
                    except AssertionError:
                        continue
                await send("power.cap.set", signed("power.cap.set", {"id": "good", **cap, "exp": in_(60)}))
                tampered = signed("power.cap.set", {"id": "tampered", **cap, "exp": in_(60)})
                await send("power.cap.set", tampered.replace(b'"capKw": 100', b'"capKw": 900'))
                await send("power.cap.set", json.dumps({"id": "dup", **cap, "exp": in_(60)}).encode())
                await send("power.cap.set", signed("power.cap.set", {"id": "old", **cap, "exp": in_(-5)}))
                await send("power.cap.set", signed("power.cap.set", {"id": "far", **cap, "exp": in_(86_400)}))
                await send("power.cap.set", signed("power.cap.set", {"id": "other", **cap, "exp": in_(60)},
                                                   station="another-station"))
                # A signed ping's payload replayed on power.cap.clear (which would clear all).
                await send("power.cap.clear", signed("ping", {"id": "moved", "exp": in_(60)}))
                # An oversized message names an id it cannot prove: refused, id not claimed.
                await send("power.cap.set", b'{"id": "big", "pad": "' + b"x" * 70_000 + b'"}')
                want = {"good", "tampered", "dup", "old", "far", "other", "moved", "big"}
                await cloud.wait_for(lambda: want <= set(replies()))
                first = replies()
                assert first["dup"]["error"]["code"] == "unsigned"
                assert first["big"]["error"]["code"] == "too_large"
                # The unsigned "dup" claimed nothing: the genuine command with its id runs.
                await send("power.cap.set", signed("power.cap.set", {"id": "dup", **cap, "exp": in_(60)}))
                await send("power.cap.set", signed("power.cap.set", {"id": "big", **cap, "exp": in_(60)}))
                await cloud.wait_for(lambda: replies()["dup"]["status"] == "ok"
                                     and replies()["big"]["status"] == "ok")
                return replies()

    got = asyncio.run(scenario())
    assert got["good"]["status"] == "ok"
    codes = {k: got[k].get("error", {}).get("code") for k in ("tampered", "old", "far", "other", "moved")}
    assert codes == {"tampered": "bad_signature", "old": "expired", "far": "invalid_exp",
                     "other": "bad_signature", "moved": "bad_signature"}
    caps = uplink.signals.power_caps()
    assert sorted(c.id for c in caps) == ["big", "dup", "good"] and all(c.cap_kw == 100 for c in caps)


def test_sems_config_check_names_an_exposed_key_file(tmp_path):
    exposed = key_file(tmp_path, 0o644)
    example = Path(__file__).resolve().parents[2] / "config" / "agent.example.toml"
    base = load(example)
    s = AgentSettings.model_validate({**base.model_dump(),
                                      "mqtt": {**base.mqtt.model_dump(), "command_hmac_key_file": exposed}})
    assert any(p.startswith("mqtt.command_hmac_key_file: ") and "group or others" in p for p in cross_check(s))
    exposed.chmod(0o600)
    s = AgentSettings.model_validate({**base.model_dump(),
                                      "mqtt": {**base.mqtt.model_dump(), "command_hmac_key_file": exposed}})
    assert not any("command_hmac_key_file" in p for p in cross_check(s))
