"""The CPU training loop keeps freed memory for the next step (vaekit.runtime.allocator)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

# In a fresh interpreter: a step's worth of activations (16 x 4 MiB and 2 x 40 MiB alive at
# once) allocated and freed ten times, page faults per cycle counted with glibc's defaults, then
# again after keep_freed_memory().
CYCLES = """
import resource, torch
from vaekit.runtime.allocator import keep_freed_memory
def cycle():
    bufs = [torch.ones(1 << 20) for _ in range(16)] + [torch.ones(10 << 20) for _ in range(2)]
    del bufs
def faults():
    cycle()
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        cycle()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0) / 10
default = faults()
assert keep_freed_memory()
print(default, faults())
"""


@pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt"
)
def test_freed_memory_is_reused_without_page_faults():
    r = subprocess.run([sys.executable, "-c", CYCLES], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    default, kept = map(float, r.stdout.split())
    pages = (16 * 4 + 2 * 40) * (1 << 20) // 4096
    assert kept < 0.05 * pages, f"{kept} page faults per cycle of {pages} pages"
    assert default > 2 * kept  # glibc's defaults give the memory back: what the call is for
