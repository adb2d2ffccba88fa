"""glibc malloc settings for trials on a CPU.

A training step or an evaluation batch frees and reallocates the same multi-MB activation and
gradient buffers again and again. glibc serves blocks above its mmap threshold with fresh ``mmap``
calls and gives freed memory at the top of the heap back to the kernel, so each new buffer costs
page faults that zero it again. Higher mmap and trim thresholds keep freed blocks in the heap
for the next batch (``bench/bench_cpu_speedups.py`` measures the gain). The price: the process
keeps up to :data:`TRIM_THRESHOLD` bytes of freed memory instead of returning them, i.e. it holds
on to its peak.

Process-wide, like ``torch.set_num_threads``; does nothing without glibc (macOS, musl, Windows).
Light module: stdlib only.
"""

from __future__ import annotations

import ctypes
import functools
import platform

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: glibc's own ceiling for its adaptive mmap threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX).
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 1024 * 1024 * 1024
#: glibc's starting thresholds, for benchmarks that compare both settings in one process.
GLIBC_DEFAULTS = (128 * 1024, 128 * 1024)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    # Once per process: platform.libc_ver() reads the interpreter's binary, and every trial asks.
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")  # glibc's soname on every Linux architecture it supports
    except OSError:
        return None


def set_malloc_thresholds(mmap_threshold: int, trim_threshold: int) -> bool:
    """Set glibc's mmap and trim thresholds; False without glibc or when it refused a value."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    ok = libc.mallopt(M_MMAP_THRESHOLD, ctypes.c_int(mmap_threshold))
    ok &= libc.mallopt(M_TRIM_THRESHOLD, ctypes.c_int(trim_threshold))
    return bool(ok)


def keep_freed_memory() -> bool:
    """Keep freed buffers in the heap for the next batch (module docstring); True when applied."""
    return set_malloc_thresholds(MMAP_THRESHOLD, TRIM_THRESHOLD)
