"""Fault-injection suite: the scenario machinery lives in harness.py (imported by each
test module); Mosquitto fixtures come from tests/conftest.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _numba_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent children load the compiled allocator from the project's cache."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", os.environ.get("NUMBA_CACHE_DIR", str(ROOT / ".numba-cache")))
