"""Files of ../shared that the tests use, found beside this checkout (as CI lays it out:
a clean clone of main with shared/ next to it), never by an absolute path."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DAY = ROOT.parent / "shared" / "scenarios" / "reference-day.json"
