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
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", DOC.read_text(), re.S)]
    return [(q, r) for q, r in zip(blocks[::2], blocks[1::2], strict=True)]


def test_the_doc_has_its_examples() -> None:
    assert len(examples()) == 2


@pytest.mark.parametrize("engine", [allocate, allocate_reference], ids=["kernel", "reference"])
@pytest.mark.parametrize("k", range(2))
def test_doc_example_result_is_what_the_allocator_answers(engine, k: int) -> None:  # noqa: ANN001
    request, result = examples()[k]
    assert engine(request) == result
