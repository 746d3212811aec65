"""Keep freed memory in the process for the next training step (Linux, glibc).

Every CPU training step allocates and frees the same activation buffers, a few MiB each. By
default glibc gives freed memory back to the kernel once the free space at the top of its heap
passes a threshold that starts a few MiB high, so the next step faults every page back in and
the kernel zeroes each one: measured on one core of an AMD EPYC (issue 18), 6,000-9,000 page
faults and 20-35 ms of kernel time per step of --preset mnist (~15% of the step), ~80 ms per
step of --preset seed. Raising both thresholds keeps the memory for reuse: the same numbers are
computed, the process's peak memory is the same, it is only not returned between steps.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 << 20  # glibc's maximum on 64-bit: smaller blocks come from the heap
TRIM_THRESHOLD = 256 << 20  # free heap top kept before any is given back


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; False where the C library is
    not glibc (or not Linux), which is left as it is."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
