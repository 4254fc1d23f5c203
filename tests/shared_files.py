"""Shared data files the tests use, inside the repository (a clean clone needs nothing
beside it): the reference day is hardware-sim/scenarios/reference-day.json, a copy of the
project workspace's shared/scenarios/reference-day.json."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DAY = ROOT / "hardware-sim" / "scenarios" / "reference-day.json"
