"""Give back the JIT compiler's memory once the allocator kernel is loaded.

numba needs LLVM (libllvmlite.so) to compile the kernel, or to link it from the numba cache,
at start-up; after that the control loop only calls the machine code. LLVM's pages stay
resident all the same (about 70 MB of clean, file-backed pages, a third of the daemon's
resident set), so once the kernel is warm the daemon tells the kernel it may drop them
(madvise MADV_PAGEOUT, Linux >= 5.4). Nothing is lost: should numba ever compile again, the
pages are read back from the file. Why not a smaller library or AOT compilation: numba's
ahead-of-time compiler (numba.pycc) is deprecated, and the JIT with its on-disk cache is
what DESIGN.md chose.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

MADV_PAGEOUT = 21  # linux/mman.h (not exposed by Python's mmap module for foreign mappings)
LIBRARIES = ("libllvmlite.so",)


def release_compiler_pages(maps_path: str = "/proc/self/maps") -> int:
    """Advise the kernel to page out the JIT compiler's library; returns the bytes advised
    (0 where unsupported: not Linux, an old kernel, or numba not loaded)."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        with open(maps_path) as maps:
            ranges = [_range(line) for line in maps if line.rstrip().endswith(LIBRARIES)]
    except OSError as exc:
        log.debug("compiler pages not released: %s", exc)
        return 0
    advised = 0
    for lo, hi in ranges:
        if libc.madvise(lo, hi - lo, MADV_PAGEOUT) == 0:
            advised += hi - lo
        else:  # EINVAL before Linux 5.4: keep the pages, nothing else changes
            log.debug("madvise(MADV_PAGEOUT) refused: errno %d", ctypes.get_errno())
            return advised
    return advised


def _range(line: str) -> tuple[int, int]:
    lo, hi = line.split(maxsplit=1)[0].split("-")
    return int(lo, 16), int(hi, 16)
