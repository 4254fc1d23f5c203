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


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--busy-cores", type=int, default=0, metavar="N",
                     help="keep N cores busy for the whole run (make test-loaded)")  # fmt: skip
    parser.addoption("--busy-max-s", type=float, default=3 * 3600.0,
                     help="a busy core stops by itself after this many seconds")  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    n = config.getoption("--busy-cores")
    if n and not hasattr(config, "workerinput"):  # once per run, not once per xdist worker
        import busy_load

        config._busy_cores = [busy_load.start(config.getoption("--busy-max-s"))  # type: ignore[attr-defined]
                              for _ in range(n)]  # fmt: skip


def pytest_unconfigure(config: pytest.Config) -> None:
    import busy_load

    for proc in getattr(config, "_busy_cores", []):
        busy_load.stop(proc)
