"""Options shared by several commands (typer defaults): output, verbosity, execution settings."""

from __future__ import annotations

import typer

from staytuned.cli._common import check_output
from staytuned.errors import StaytunedError
from staytuned.hparams.schema import EXECUTION


def _json_path(value: str | None) -> str | None:
    """--json PATH: refused before the command runs when PATH cannot be written."""
    if value is not None and value != "-":
        try:
            check_output(value, "--json")
        except StaytunedError as exc:
            raise typer.BadParameter(str(exc).replace("field '--json': ", "")) from None
    return value


JsonOpt = typer.Option(None, "--json", callback=_json_path,
                       help="Also write the result as JSON to PATH ('-' for stdout).")
QuietOpt = typer.Option(False, "--quiet", "-q", help="Print only errors.")
VerboseOpt = typer.Option(False, "--verbose", "-v", help="Print more detail (debug logs).")

# Execution settings (how a machine runs trials, never part of a config): help from the schema.
_EXEC_HELP = {p.name: p.help for p in EXECUTION}
PrecisionOpt = typer.Option("auto", "--precision", help=_EXEC_HELP["precision"])
DeviceOpt = typer.Option(None, "--device", help=_EXEC_HELP["device"])
ThreadsOpt = typer.Option(None, "--threads", help=_EXEC_HELP["threads"])
MicroBatchOpt = typer.Option(None, "--micro-batch-size", help=_EXEC_HELP["micro_batch_size"])
