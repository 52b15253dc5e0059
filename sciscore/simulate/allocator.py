"""Keep freed CPU tensors in the heap (glibc `mallopt`), for long CPU simulations.

Each time step allocates and frees a few dozen tensors of (members, 4, n, n) size. glibc serves
such large blocks with fresh mmap pages and returns them to the system on free. Every step then pays
page faults: 26.8 million minor faults and 17 % system time in the 64² recipe. Raising the mmap and
trim thresholds makes glibc reuse the same memory. This is process-wide, so only `sciscore
simulate` calls it, and it does nothing off glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def reuse_freed_memory(threshold_bytes: int = 1 << 30) -> bool:
    """Serve blocks below `threshold_bytes` from the reusable heap; True if glibc accepted it."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    threshold = min(threshold_bytes, 2**31 - 1)
    return bool(mallopt(M_MMAP_THRESHOLD, threshold)) and bool(mallopt(M_TRIM_THRESHOLD, threshold))
