"""The README's first screen and its configuration example stay true."""

from __future__ import annotations

import re
from pathlib import Path

from agent.config.settings import load

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_first_screen_gives_exactly_the_two_setup_commands():
    block = re.search(r"## Two commands on a fresh machine\n\n```sh\n(.*?)```", README, re.S)
    assert block is not None
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert commands == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def test_configuration_example_is_a_valid_settings_file(tmp_path):
    example = re.search(r"```toml\n(.*?)```", README, re.S)
    assert example is not None
    ca = tmp_path / "ca.pem"
    ca.write_text("placeholder: config check only verifies the file is readable\n")
    path = tmp_path / "agent.toml"
    path.write_text(example.group(1).replace("/etc/sems/mqtt-ca.pem", str(ca)))
    settings = load(path)
    assert settings.station.grid_capacity_kw == 330.0
    assert {d.name for d in settings.devices} == {"grid", "cp1"}
