"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mosquitto import Mosquitto


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """Start real Mosquitto brokers on free loopback ports: factory(**Mosquitto kwargs)."""
    started: list[Mosquitto] = []

    def make(name: str = "broker", **kwargs: Any) -> Mosquitto:
        broker = Mosquitto(tmp_path / name, **kwargs).start()
        started.append(broker)
        return broker

    yield make
    for broker in started:
        broker.stop()


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[..., Mosquitto]) -> Mosquitto:
    """One anonymous broker on a free loopback port."""
    return mosquitto_factory()
