"""The ``staytuned`` command line: the only place that prints or exits.

Each command group lives in its own module with a ``register(app)`` function, listed in
:data:`COMMAND_MODULES`; a run imports only the module of the command it names.
Command modules import only typer/rich at top level; heavy libraries (torch,
transformers, ray, pandas) are imported inside command bodies so that
``staytuned cbs --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import typer

from staytuned import __version__

#: Each command module and the top-level commands its ``register`` adds (a test keeps this
#: true). Order here is the order in `staytuned --help`.
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "staytuned.cli.cbs": ("cbs", "recommend"),
    "staytuned.cli.tasks": ("tasks",),
    "staytuned.cli.train": ("train",),
    "staytuned.cli.search": ("tune", "grid", "results", "simulate"),
    "staytuned.cli.decode": ("decode", "generate", "compare", "serve"),
    "staytuned.cli.report": ("report", "export"),
    "staytuned.cli.doctor": ("doctor",),
    "staytuned.cli.plan": ("plan",),
}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"staytuned {__version__}")
        raise typer.Exit()


def build_app(command: str | None = None) -> typer.Typer:
    """The whole CLI; with ``command`` (a top-level command name), only the module that owns it.

    Why: importing every command module and its options costs a start-up that a one-second
    command such as ``cbs rank`` notices. An unknown name loads them all, so the error can
    suggest the right one.
    """
    app = typer.Typer(
        name="staytuned",
        help="Good LLM hyperparameters in a handful of trials: Coverage-based Search and classic HPO.",
        no_args_is_help=True,
        rich_markup_mode="rich",
        pretty_exceptions_enable=False,
        add_completion=False,
        epilog="Exit codes: 0 success; 1 the run finished but failed (e.g. every trial failed); "
        "2 bad input or usage (the message names the file, column, flag or value); 130 interrupted.",
    )

    @app.callback()
    def _root(
        version: bool = typer.Option(
            False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ) -> None:
        """Good LLM hyperparameters in a handful of trials."""

    owners = [m for m, names in COMMAND_MODULES.items() if command in names] or list(COMMAND_MODULES)
    for name in owners:
        importlib.import_module(name).register(app)
    return app


def _command_of(argv: Sequence[str]) -> str | None:
    """The top-level command named in ``argv`` (the first argument that is not an option)."""
    return next((a for a in argv if not a.startswith("-")), None)


def main() -> None:
    build_app(_command_of(sys.argv[1:]))()
