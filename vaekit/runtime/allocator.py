"""Keep freed memory in the process for the next training step (Linux, glibc).

Every CPU training step allocates and frees the same activation buffers. By default glibc maps
each block over 32 MiB (and, after its threshold adapts, smaller ones) straight from the kernel
and unmaps it when freed, and gives the free top of its heap back once it passes a few MiB, so
the next step faults every page in again and the kernel zeroes each one. Measured on one core of
an AMD EPYC (issue 18): 6,000-9,000 page faults and 20-35 ms of kernel time per step of --preset
mnist (~15% of the step), 500,000 faults and 1.9 s per 9.8 s step of --preset celeba64. Served
from the heap and never trimmed below its peak, the same blocks are reused: the same numbers are
computed and the peak memory is no higher; it is only kept until the process ends.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)
TRIM_THRESHOLD = 2**31 - 1  # free heap top kept before any is given back: all (an int's most)


def keep_freed_memory() -> bool:
    """Serve every block from glibc's heap and keep its freed top for reuse, for the rest of
    the process; False where the C library is not glibc (or not Linux), left as it is."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
