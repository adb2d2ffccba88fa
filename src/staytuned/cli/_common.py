"""Shared CLI plumbing: consoles, error handling, JSON output (the shared options: cli/_options.py)."""

from __future__ import annotations

import contextlib
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from staytuned._util.io import atomic_write_text
from staytuned.errors import StaytunedError

# Results go to stdout; progress, warnings and errors to stderr, so `--json -` pipes stay clean.
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


@contextlib.contextmanager
def cli_errors() -> Iterator[None]:
    """Turn staytuned's own errors into a one-line message and exit code 2."""
    try:
        yield
    except StaytunedError as exc:
        error(str(exc))
        raise typer.Exit(EXIT_USAGE) from None
    except OSError as exc:
        if exc.filename is None:  # not about a path (a socket, a library's own failure): a bug
            raise
        # A path a check before the work could not foresee (/proc, a full disk, a file that
        # vanished): still bad input, named, not a traceback.
        what = exc.filename if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
        error(f"{what}: {exc.strerror or exc}")
        raise typer.Exit(EXIT_USAGE) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        raise typer.Exit(EXIT_INTERRUPTED) from None


def error(message: str) -> None:
    """``error: MESSAGE`` on stderr, on one logical line: a URL or path in it never breaks at the
    terminal's width, and brackets in it (``[1e-05, 0.001]``) are text, not markup."""
    from rich.markup import escape

    err.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False,
              soft_wrap=True)


def check_output(path: str | Path | None, flag: str, *, folder: bool = False) -> None:
    """Refuse an output ``path`` that cannot be written, before the work that would fill it.

    A folder where a file goes (or a file where a folder goes), a parent that is a file, or a
    parent folder that cannot be created: :class:`InputError` naming ``flag`` and the path.
    Missing parent folders are created now (the write would create them anyway).
    """
    import os

    from staytuned.errors import InputError

    if path is None or str(path) == "-":
        return
    p = Path(path)
    if not folder and (p.is_dir() or str(path).endswith(os.sep)):
        raise InputError("is a folder", field=flag, value=str(path), expected="a file path")
    if folder and p.exists() and not p.is_dir():
        raise InputError("is a file", field=flag, value=str(path), expected="a folder")
    parent = p.absolute().parent
    ancestor = parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"cannot be created: {ancestor} is a file, not a folder", field=flag,
                         value=str(path))
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create its folder {parent}: {exc.strerror}", field=flag,
                         value=str(path)) from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write into {parent}: permission denied", field=flag,
                         value=str(path))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return _jsonable(obj.item())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | Path | None, payload: Any) -> None:
    """Write ``payload`` as JSON to ``path`` ('-' = stdout); NaN/inf become null."""
    if path is None:
        return
    text = json.dumps(_jsonable(payload), indent=2, sort_keys=False)
    if str(path) == "-":
        sys.stdout.write(text + "\n")
        return
    with cli_errors():  # a path no check foresaw (a full disk): exit 2, not a traceback
        atomic_write_text(path, text + "\n")  # a failed run never leaves half a file
