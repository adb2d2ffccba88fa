"""The command line loads only the module of the command it runs, and says the same either way."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from staytuned.cli import COMMAND_MODULES, _command_of, build_app


def _top_level(app: typer.Typer) -> set[str]:
    group = typer.main.get_command(app)
    return set(group.commands)  # type: ignore[attr-defined]


@pytest.mark.parametrize("module", list(COMMAND_MODULES))
def test_each_module_registers_exactly_the_commands_listed_for_it(module):
    app = typer.Typer()
    app.callback()(lambda: None)  # a group even when the module adds one command
    importlib.import_module(module).register(app)
    assert _top_level(app) == set(COMMAND_MODULES[module])


def test_a_named_command_loads_its_module_only_and_anything_else_loads_all():
    every = {name for names in COMMAND_MODULES.values() for name in names}
    assert _top_level(build_app("rank")) == every  # not top-level: all, so click can suggest
    assert _top_level(build_app(None)) == every
    assert _top_level(build_app("cbs")) == {"cbs", "recommend"}
    assert _top_level(build_app("simulate")) == {"tune", "grid", "results", "simulate"}


@pytest.mark.parametrize(("argv", "command"), [
    ([], None), (["--help"], None), (["--version"], None), (["cbs", "rank", "t.csv"], "cbs"),
    (["--version", "tune", "--trials", "3"], "tune"),
])
def test_command_of_argv(argv, command):
    assert _command_of(argv) == command


def test_help_of_a_command_is_the_same_with_one_module_or_all():
    runner = CliRunner()
    env = {"COLUMNS": "120"}
    one = runner.invoke(build_app("cbs"), ["cbs", "rank", "--help"], env=env)
    every = runner.invoke(build_app(), ["cbs", "rank", "--help"], env=env)
    assert one.exit_code == every.exit_code == 0
    assert one.output == every.output


def test_unknown_command_still_suggests_from_all_commands():
    res = CliRunner().invoke(build_app("simulat"), ["simulat"])
    assert res.exit_code == 2
    assert "simulate" in res.output


def test_the_command_line_imports_no_other_command_module():
    code = ("import sys; sys.argv = ['staytuned', 'cbs', 'rank', '--help']\n"
            "from staytuned.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('staytuned.cli.') and m.count('.') == 2))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "COLUMNS": "120"}).stdout
    loaded = {m for m in COMMAND_MODULES if m in out.splitlines()[-1]}
    assert loaded == {"staytuned.cli.cbs"}
