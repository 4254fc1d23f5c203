"""freeze_startup_heap: the start-up heap leaves the collector's scans; new garbage does not."""

from __future__ import annotations

import gc
import weakref

from agent.control.gc_freeze import freeze_startup_heap


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_start_up_objects_are_frozen_and_later_cycles_still_collected() -> None:
    survivor = _Node()
    try:
        frozen = freeze_startup_heap()
        assert frozen > 0
        assert frozen == gc.get_freeze_count()
        assert not any(o is survivor for o in gc.get_objects())  # frozen: not scanned

        a, b = _Node(), _Node()  # a reference cycle made after the freeze
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        gc.collect()
        assert gone() is None
    finally:
        gc.unfreeze()  # other tests in this process keep the collector as it was
