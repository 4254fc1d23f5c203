"""docs/openapi.json is current, and fuzzing the live API from it finds no 5xx."""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from agent.api import openapi
from api.live import TOKEN


def test_committed_openapi_is_current():
    assert openapi.DOC.read_text() == openapi.render(), "run: python -m agent.api.openapi"


def test_every_fleet_resource_is_documented():
    paths = json.loads(openapi.DOC.read_text())["paths"]
    for path in ("/api/v1/charging/sessions/{session_id}/start", "/api/v1/v2g/sessions/{session_id}/stop",
                 "/api/v1/optimization/{opt_id}/results", "/api/v1/grid/supply", "/api/v1/battery/maintenance",
                 "/api/v1/fleet/{fleet_id}/optimization", "/api/v1/vehicles/{vehicle_id}/schedule",
                 "/api/v1/analytics/savings", "/api/v1/health", "/metrics", "/sessions/{session_id}/power-update"):
        assert path in paths, path


SCHEMA = schemathesis.openapi.from_dict(json.loads(openapi.DOC.read_text()))


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory):
    from api.conftest import ELECTRA
    from api.live import LiveApi

    api = LiveApi(tmp_path_factory.mktemp("fuzz"), ELECTRA).start()
    yield api
    api.stop()


@SCHEMA.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzz_finds_no_server_error(case, fuzz_target):
    """Generated requests over loopback TCP (with the token): never a 5xx."""
    response = case.call(base_url=f"http://127.0.0.1:{fuzz_target.server.tcp_port}",
                         headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert response.status_code < 500, (case.method, case.formatted_path, response.text)
