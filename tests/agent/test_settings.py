"""Settings: the example file is valid, env overrides it, and every problem names its key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.config.settings import ConfigError, load

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "agent.example.toml"
# The command module on its own, as `sems config` runs it (exit status and streams).
CHECK = """
import argparse, sys
from agent.cli.commands import config
p = argparse.ArgumentParser()
config.add_arguments(p)
sys.exit(config.run(p.parse_args()))
"""


def test_example_is_valid_and_complete():
    s = load(EXAMPLE)
    assert s.station.grid_capacity_kw == 330.0
    assert [c.id for c in s.station.chargers] == ["CP1", "CP2"]
    assert s.control.period_s == 0.25
    # Fallbacks share what the pessimistic base load leaves, by rated power.
    assert [s.fallback_kw(c) for c in s.station.chargers] == [150.0, 150.0]


def test_env_overrides_nested_keys(monkeypatch):
    monkeypatch.setenv("SEMS_CONTROL__PERIOD_S", "0.5")
    monkeypatch.setenv("SEMS_MQTT__PASSWORD", "s3cret")
    s = load(EXAMPLE)
    assert s.control.period_s == 0.5
    assert s.control.deadband_kw == 0.5  # the rest of [control] still comes from the file
    assert s.mqtt.password is not None and s.mqtt.password.get_secret_value() == "s3cret"


@pytest.mark.parametrize(
    ("edits", "problems"),
    [
        pytest.param(
            [("grid_capacity_kw = 330.0", "grid_capacity_kw = -1"),
             ("period_s = 0.25", "period_s = 5\nperod = 1"),
             ('endpoint = "tcp://127.0.0.1:5020"', 'endpoint = "http://x"')],
            ["station.grid_capacity_kw: Input should be greater than 0",
             "devices[0].endpoint: 'http://x': expected tcp://HOST:PORT or rtu:///dev/ttyXXX",
             "control.period_s: Input should be less than or equal to 1",
             "control.perod: Extra inputs are not permitted"],
            id="every field problem has its key path",
        ),
        pytest.param(
            [('device = "cp2"', 'device = "grid"'),
             ('grid_meter = "grid"', 'grid_meter = "meter-x"')],
            ["station.grid_meter: no [[devices]] entry named 'meter-x'",
             "station.chargers[1].device: device 'grid' is a meter, expected a charger"],
            id="cross references are checked",
        ),
    ],
)  # fmt: skip
def test_problems_are_named_by_key_path(tmp_path, edits, problems):
    text = EXAMPLE.read_text()
    for old, new in edits:
        assert old in text, old  # the example still has what the edit targets
        text = text.replace(old, new)
    bad = tmp_path / "agent.toml"
    bad.write_text(text)
    with pytest.raises(ConfigError) as err:
        load(bad)
    assert err.value.problems == problems


def test_config_check_cli(tmp_path):
    def check(path):
        return subprocess.run(
            [sys.executable, "-c", CHECK, "check", str(path)],
            capture_output=True, text=True, cwd=ROOT,
        )  # fmt: skip

    ok = check(EXAMPLE)
    assert (ok.returncode, ok.stdout) == (0, "ok\n")
    broken = tmp_path / "broken.toml"
    broken.write_text("[station\n")
    res = check(broken)
    assert res.returncode == 78
    assert "invalid TOML" in res.stderr and "Traceback" not in res.stderr
    missing = check(tmp_path / "nope.toml")
    assert missing.returncode == 78 and "no such file" in missing.stderr


def test_mqtt_and_api_sections(tmp_path, monkeypatch):
    s = load(EXAMPLE)
    assert s.mqtt is not None and s.mqtt.station_id == "STATION-1"  # from [station] id
    assert s.control.telemetry_interval_s == s.mqtt.telemetry_interval_s == 10.0
    assert str(s.api.socket_path) == "/run/sems/api.sock" and s.api.socket_mode == 0o660
    no_mqtt = tmp_path / "agent.toml"
    text = EXAMPLE.read_text()
    head, rest = text.split("[mqtt]\n", 1)
    no_mqtt.write_text(head + "[api]\n" + rest.split("[api]\n", 1)[1])
    assert load(no_mqtt).mqtt is None  # no [mqtt]: no uplink
    # Secrets from files; a relative name is a systemd credential.
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt-password").write_text("pw-from-credential\n")
    (creds / "mqtt-password").chmod(0o600)
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('# password_file = "mqtt-password"', 'password_file = "mqtt-password"')
                   .replace("# tcp_port = 8787", "tcp_port = 8787"))
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    with pytest.raises(ConfigError) as err:
        load(bad)
    assert err.value.problems == ["api.token: TCP (api.tcp_port) needs token or token_file"]
    ok = tmp_path / "ok.toml"
    ok.write_text(bad.read_text().replace('# token_file = "api-token"', 'token_file = "api-token"'))
    with pytest.raises(ConfigError) as err:
        load(ok)
    assert err.value.problems == [f"api.token_file: no such file {creds / 'api-token'}"]
    (creds / "api-token").write_text("t" * 20 + "\n")
    with pytest.raises(ConfigError) as err:  # group/world-readable: refused, not used
        load(ok)
    assert err.value.problems[0].startswith("api.token_file: ") and "chmod 600" in err.value.problems[0]
    (creds / "api-token").chmod(0o600)
    s = load(ok)
    assert s.mqtt is not None and s.mqtt.resolved_password() == "pw-from-credential"
    assert s.api.bearer_token() == "t" * 20
