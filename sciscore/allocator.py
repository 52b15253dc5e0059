"""Process-wide settings of the C allocator (glibc's malloc), applied by the command line.

torch's CPU tensors come straight from malloc. With glibc's defaults, an array above the dynamic
mmap threshold (128 KiB, raised on the fly up to the size of the largest freed block) is returned
to the system when freed, and the top of the heap is trimmed once 2x that threshold lies unused;
a loop that allocates and frees arrays of a few MB each step (a sampler, a training step) then
pays a page fault for every 4 KiB page of its new arrays. Fixed thresholds keep the freed memory
in the process for reuse: `sciscore generate` of the default model ran 13-20 % faster on the
2-core CPU (studies/performance/sampling/README.md).

A library must not change the process's allocator, so only ``sciscore``'s command line calls
``keep_freed_memory``; a user's own script may call it too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 2**20   # glibc's largest allowed value on 64-bit systems
TRIM_THRESHOLD = 256 * 2**20


def keep_freed_memory() -> bool:
    """Set glibc's mmap threshold to 32 MiB and its trim threshold to 256 MiB, so that arrays
    below 32 MiB are recycled inside the process instead of being unmapped and faulted in again.
    Returns False (and changes nothing) where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # glibc only (musl has no mallopt thresholds)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
