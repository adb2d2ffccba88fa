"""release_memory gives freed heap pages back to the OS (glibc), so a worker does not keep a
finished trial's memory."""

import sys

import pytest

from staytuned.finetune.memory import current_rss_mb, release_memory, trim_heap


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RSS is read from /proc and trimmed by glibc")
def test_release_memory_returns_freed_heap_pages() -> None:
    if not trim_heap():
        pytest.skip("no glibc malloc_trim here")
    # 64 KiB buffers come from malloc's heap (below its mmap threshold). Keeping every 16th one
    # alive pins the heap's top, so free() alone cannot give the pages back: only a trim can.
    # Trim first, so that free heap left by earlier tests is not resident and the buffers show.
    release_memory()
    before = current_rss_mb()
    bufs = [bytearray(b"x" * 65536) for _ in range(4096)]  # 256 MiB
    keep = bufs[::16]
    del bufs
    held = current_rss_mb()
    assert held - before > 200, (before, held)  # the freed buffers still count
    release_memory()
    after = current_rss_mb()
    assert held - after > 0.75 * (held - before - 16), (before, held, after)
    assert len(keep) == 256
