"""Peak memory of one trial, and releasing memory after it.

What is measured (``peak_memory_mb``):

- on a CUDA device: the peak of ``torch.cuda.max_memory_allocated`` during the trial (tensors
  only, excluding the allocator's cached blocks), in MiB;
- on CPU under Linux: the peak resident set size (VmHWM) of the whole process during the
  trial, in MiB; the high-water mark is reset at the start of the trial by writing ``5`` to
  ``/proc/self/clear_refs``, so it includes the base model and Python itself;
- elsewhere: the process's lifetime peak RSS (``resource.getrusage``), which cannot be reset.
"""

from __future__ import annotations

import functools
import gc
from pathlib import Path
from typing import Any

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _read_status_kb(key: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def current_rss_mb() -> float:
    """The process's resident set size now, in MiB (0 where unknown)."""
    kb = _read_status_kb("VmRSS")
    return kb / 1024 if kb is not None else 0.0


class PeakMemory:
    """Context manager: ``with PeakMemory(device) as peak: ...; peak.mb``."""

    def __init__(self, device: object = "cpu") -> None:
        self.cuda = str(device).startswith("cuda")
        self.resettable = False
        self.mb = 0.0

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
        else:
            try:
                _CLEAR_REFS.write_text("5")
                self.resettable = _read_status_kb("VmHWM") is not None
            except OSError:
                self.resettable = False
        return self

    def __exit__(self, *exc: object) -> None:
        self.mb = self.read()

    def read(self) -> float:
        if self.cuda:
            import torch

            return torch.cuda.max_memory_allocated() / 2**20
        if self.resettable:
            kb = _read_status_kb("VmHWM")
            if kb is not None:
                return kb / 1024
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def release_memory() -> None:
    """Collect garbage, give cached GPU blocks back, and return freed heap pages to the OS.

    Called after every trial. On CPU, torch frees a trial's tensors into glibc's heap, which
    keeps the pages: a SmolLM2 worker stayed at ~4 GB RSS between trials, and the next trial's
    peak (VmHWM is reset to the current RSS) started from there. ``malloc_trim`` takes it back
    to ~1.2 GB (``bench/bench_memory.py``).
    """
    gc.collect()
    trim_heap()
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def trim_heap() -> bool:
    """Return the free memory at the top and inside glibc's heap to the OS; False where there is
    no glibc (macOS, musl), where this does nothing."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


@functools.cache
def _malloc_trim() -> Any:
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn
