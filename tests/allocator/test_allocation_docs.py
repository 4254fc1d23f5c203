"""docs/allocation.md's examples are what the allocator answers: each JSON request block is
followed by its result block."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from allocator import allocate, allocate_reference

DOC = Path(__file__).resolve().parents[2] / "docs" / "allocation.md"


def examples() -> list[tuple[dict, dict]]:
    """Each request block (it has a stationId) with the result block that follows it before
    the next request; a request shown with a table instead (Electra's example, checked in
    tests/test_readme.py) has none."""
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", DOC.read_text(), re.S)]
    pairs, request = [], None
    for block in blocks:
        if "stationId" in block:
            request = block
        elif "allocations" in block and request is not None:
            pairs.append((request, block))
            request = None
    return pairs


def test_the_doc_has_its_examples() -> None:
    assert len(examples()) == 2


@pytest.mark.parametrize("engine", [allocate, allocate_reference], ids=["kernel", "reference"])
@pytest.mark.parametrize("k", range(2))
def test_doc_example_result_is_what_the_allocator_answers(engine, k: int) -> None:  # noqa: ANN001
    request, result = examples()[k]
    assert engine(request) == result
