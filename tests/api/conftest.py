from __future__ import annotations

import pytest

from api.live import LiveApi

ELECTRA = {
    "stationId": "ELECTRA_PARIS_15",
    "gridCapacity": 330,
    "chargers": [{"id": "CP001", "maxPower": 200, "connectors": 2},
                 {"id": "CP002", "maxPower": 200, "connectors": 2}],
}


@pytest.fixture
def live(tmp_path):
    api = LiveApi(tmp_path, ELECTRA).start()
    yield api
    api.stop()
