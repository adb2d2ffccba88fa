"""Atomic writes (a reader sees the old file, or none, or the whole new one, never half of it),
and JSON Lines reading.

Every helper writes to a temporary name beside the target (same folder, so the final rename
stays on one file system): ``<name>.<pid>-<random>.tmp``. The rename replaces the target only when
the writing finished; on any error the temporary file (or folder) is removed and the error
propagates. Parent folders are created. ``fsync=True`` also flushes the data to disk before the
rename (for files other processes rely on after a crash; off by default: slower).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_dir", "atomic_open", "atomic_path", "atomic_write_bytes", "atomic_write_text",
           "read_jsonl", "temp_name"]


def temp_name(target: str | Path) -> Path:
    """A fresh temporary path beside ``target`` (the one naming scheme of this module)."""
    p = Path(target)
    return p.with_name(f"{p.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform lets a folder be opened
        _fsync_file(folder)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path for a writer that wants a file name (pyarrow, matplotlib ...);
    when the block ends without error the file there replaces ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(target)
    try:
        yield tmp
        if fsync:
            _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise
    if fsync:
        _fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", *, encoding: str | None = "utf-8",
                newline: str | None = None, fsync: bool = False) -> Iterator[IO[Any]]:
    """``open(path, mode)`` on a temporary file that replaces ``path`` when the block succeeds.

    ``mode`` is ``"w"`` (text) or ``"wb"`` (bytes); ``encoding`` and ``newline`` as for ``open``.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes a whole file: mode 'w' or 'wb', not {mode!r}")
    binary = mode == "wb"
    with atomic_path(path) as tmp, open(tmp, "xb" if binary else "x", encoding=None if binary else encoding,
                                        newline=None if binary else newline) as fh:
        yield fh
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())
    if fsync:
        _fsync_dir(Path(path).parent)


def atomic_write_text(path: str | Path, text: str, *, encoding: str = "utf-8",
                      fsync: bool = False) -> Path:
    """Write ``text`` to ``path`` atomically; returns ``path`` as a Path."""
    with atomic_open(path, "w", encoding=encoding, fsync=fsync) as fh:
        fh.write(text)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes, *, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path`` as a Path."""
    with atomic_open(path, "wb", fsync=fsync) as fh:
        fh.write(data)
    return Path(path)


@contextlib.contextmanager
def atomic_dir(path: str | Path, *, keep_existing: Callable[[Path], bool] | None = None
               ) -> Iterator[Path]:
    """Yield a fresh empty folder beside ``path``; when the block succeeds it becomes ``path``.

    A folder that appeared at ``path`` meanwhile (another process finished first) is kept when
    ``keep_existing(path)`` says it is complete, and this one is dropped; otherwise (a stale half
    entry, or no ``keep_existing``) it is replaced.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(target)
    tmp.mkdir()
    try:
        yield tmp
        try:
            tmp.rename(target)
        except OSError:
            if keep_existing is None or not keep_existing(target):
                shutil.rmtree(target, ignore_errors=True)
                tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def read_jsonl(path: str | Path, *, objects: bool = True) -> list[tuple[int, Any]]:
    """(line number, value) of every non-blank line of a JSON Lines file (``.gz`` too).

    ``objects``: every line must be a JSON object. A bad line raises
    :class:`~staytuned.errors.InputError` naming the file and its line as ``row``.
    """
    from staytuned.errors import InputError

    p = Path(path)
    out: list[tuple[int, Any]] = []
    with gzip.open(p, "rt", encoding="utf-8") if p.suffix == ".gz" else p.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"malformed JSON line: {exc.msg} at column {exc.colno}", file=str(p),
                                 row=n, expected="one JSON object per line" if objects else None) from None
            if objects and not isinstance(obj, dict):
                raise InputError(f"line is a JSON {type(obj).__name__}, not an object", file=str(p),
                                 row=n, expected="one JSON object per line")
            out.append((n, obj))
    return out
