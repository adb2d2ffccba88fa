"""The ``staytuned`` command line: the only place that prints or exits.

Each command group lives in its own module with a ``register(app)`` function.
Command modules import only typer/rich at top level; heavy libraries (torch,
transformers, ray, pandas) are imported inside command bodies so that
``staytuned cbs --help`` stays fast.
"""

from __future__ import annotations

import importlib

import typer

from staytuned import __version__

# Order here is the order in `staytuned --help`.
_COMMAND_MODULES = (
    "staytuned.cli.cbs",  # cbs rank / evaluate, recommend
    "staytuned.cli.tasks",  # tasks
    "staytuned.cli.train",  # train
    "staytuned.cli.search",  # tune, grid, results, simulate
    "staytuned.cli.decode",  # decode tune, generate, compare, serve
    "staytuned.cli.report",  # report, export
    "staytuned.cli.doctor",  # doctor
    "staytuned.cli.plan",  # plan
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"staytuned {__version__}")
        raise typer.Exit()


def build_app() -> typer.Typer:
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

    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(app)
    return app


def main() -> None:
    build_app()()
