from __future__ import annotations

import ctypes
import platform

import pytest

from staytuned.hardware import malloc


def test_keep_freed_memory_applies_on_glibc() -> None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc only")
    assert malloc.keep_freed_memory() is True
    assert malloc.set_malloc_thresholds(*malloc.GLIBC_DEFAULTS) is True
    assert malloc.keep_freed_memory() is True


def test_nothing_happens_without_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []

    class FakeLibc:
        def mallopt(self, param: int, value: ctypes.c_int) -> int:
            calls.append((param, value.value))
            return 1

    monkeypatch.setattr(platform, "libc_ver", lambda: ("musl", "1.2"))
    malloc._libc.cache_clear()
    try:
        assert malloc.keep_freed_memory() is False
    finally:
        malloc._libc.cache_clear()
    monkeypatch.setattr(malloc, "_libc", lambda: FakeLibc())
    assert malloc.keep_freed_memory() is True
    assert calls == [(malloc.M_MMAP_THRESHOLD, malloc.MMAP_THRESHOLD), (malloc.M_TRIM_THRESHOLD, malloc.TRIM_THRESHOLD)]
