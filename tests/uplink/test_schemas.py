"""docs/schemas/ must match the models (regenerate: python -m agent.uplink.schemas)."""

from __future__ import annotations

import json

from agent.uplink import schemas


def test_committed_schemas_are_current(capsys):
    assert schemas.main(["--check"]) == 0, capsys.readouterr().err


def test_every_message_schema_requires_the_envelope():
    for name, text in schemas.render().items():
        if name.startswith("sems.cmd."):
            assert "id" in json.loads(text)["required"], name
        else:
            assert {"schema", "stationId", "seq", "ts"} <= set(json.loads(text)["required"]), name
