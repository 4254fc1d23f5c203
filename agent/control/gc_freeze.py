"""Keep full garbage collections out of the control cycle's timing.

After start-up the process holds a large, long-lived heap (numba and LLVM objects from the
kernel warm-up, pymodbus, the solver bindings, the settings and drivers). CPython's
generation-2 collection walks all of it: at 100 chargers such a pause measured 45-130 ms
inside a cycle (bench/loop.py --scale), which alone set the cycle p99. Collecting once and
then moving the survivors to the permanent generation (gc.freeze) means later collections
walk only what was allocated since. Garbage made after this point is still collected as
before; what the frozen start-up objects hold is simply never scanned again.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Collect once, then exempt everything alive from future collections; returns the
    number of objects frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
