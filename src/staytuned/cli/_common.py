"""Shared CLI plumbing: consoles, error handling, JSON output, verbosity."""

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

from staytuned.errors import StaytunedError
from staytuned.hparams.schema import EXECUTION

# Results go to stdout; progress, warnings and errors to stderr, so `--json -` pipes stay clean.
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

JsonOpt = typer.Option(None, "--json", help="Also write the result as JSON to PATH ('-' for stdout).")
QuietOpt = typer.Option(False, "--quiet", "-q", help="Print only errors.")
VerboseOpt = typer.Option(False, "--verbose", "-v", help="Print more detail (debug logs).")

# Execution settings (how a machine runs trials, never part of a config): help from the schema.
_EXEC_HELP = {p.name: p.help for p in EXECUTION}
PrecisionOpt = typer.Option("auto", "--precision", help=_EXEC_HELP["precision"])
DeviceOpt = typer.Option(None, "--device", help=_EXEC_HELP["device"])
ThreadsOpt = typer.Option(None, "--threads", help=_EXEC_HELP["threads"])
MicroBatchOpt = typer.Option(None, "--micro-batch-size", help=_EXEC_HELP["micro_batch_size"])


@contextlib.contextmanager
def cli_errors() -> Iterator[None]:
    """Turn staytuned's own errors into a one-line message and exit code 2."""
    try:
        yield
    except StaytunedError as exc:
        err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        raise typer.Exit(EXIT_INTERRUPTED) from None


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
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(p)  # atomic: a failed run never leaves half a file
