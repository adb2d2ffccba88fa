"""Library errors name API parameters; the CLI renders them as its flags."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from staytuned.cli._flags import as_flags
from staytuned.errors import InputError

SRC = Path(__file__).resolve().parents[2] / "src" / "staytuned"
SYNTH = "staytuned.search.synthetic:synthetic_trial"


def test_as_flags_renames_the_field_and_underscore_names_in_the_text():
    exc = InputError("a trial needs some CPU or GPU", field="cpus_per_trial", value=0,
                     expected="> 0 (or set gpus_per_trial)")
    out = as_flags(exc, {"cpus_per_trial": "--cpus-per-trial", "gpus_per_trial": "--gpus-per-trial"})
    assert str(out) == ("field '--cpus-per-trial': a trial needs some CPU or GPU (got 0); "
                        "expected > 0 (or set --gpus-per-trial)")
    assert out.field == "--cpus-per-trial" and out.value == 0


def test_as_flags_leaves_a_files_field_and_plain_words_alone():
    exc = InputError("the space fixes another method", file="s.yaml", field="method",
                     value="full", expected="lora")
    assert str(as_flags(exc, {"method": "--method"})) == str(exc)
    exc = InputError("more workers than trials", field="n_trials", value=0)
    assert str(as_flags(exc, {"workers": "--workers", "n_trials": "--trials"})) == \
        "field '--trials': more workers than trials (got 0)"


@pytest.fixture()
def cli(tmp_path):
    from typer.testing import CliRunner

    from staytuned.cli import build_app

    app = build_app()

    def run(*args: str):
        old = os.getcwd()
        os.chdir(tmp_path)
        try:
            return CliRunner().invoke(app, list(args))
        finally:
            os.chdir(old)

    return run


TUNE = ["tune", "--task", "t1", "--model", "m", "--space", "preset:demo", "--trial-fn", SYNTH, "-q"]


@pytest.mark.parametrize(("args", "flag"), [
    (["--workers", "0"], "--workers"),
    (["--cpus-per-trial", "2"], "--cpus-per-trial"),
    (["--ray-address", "auto"], "--ray-address"),
    (["--backend", "slurm"], "--backend"),
    (["--backend", "ray", "--gpus-per-trial", "1.5"], "--gpus-per-trial"),
    (["--trials", "0"], "--trials"),
    (["--strategy", "bayes"], "--strategy"),
    (["--pruner", "sometimes"], "--pruner"),
])
def test_tune_errors_name_the_flag(cli, tmp_path, args, flag):
    res = cli(*TUNE, *args)
    text = res.output.replace("\n", "")
    assert res.exit_code == 2, res.output
    assert f"field '{flag}'" in text
    assert not list(tmp_path.glob("runs/*/study.db"))


def test_grid_and_simulate_errors_name_the_flag(cli, tmp_path):
    res = cli("grid", "--tasks", ",", "--models", "m", "--trial-fn", SYNTH, "-q")
    assert res.exit_code == 2 and "field '--tasks'" in res.output.replace("\n", "")
    res = cli("grid", "--tasks", "a", "--models", "m", "--workers", "0", "-q")
    assert res.exit_code == 2 and "field '--workers'" in res.output.replace("\n", "")
    (tmp_path / "t.csv").write_text("dataset,config_id,hp_lr,score\na,c1,0.1,1\nb,c1,0.1,2\n")
    res = cli("simulate", "t.csv", "--strategies", "cbs,magic")
    assert res.exit_code == 2 and "field '--strategies'" in res.output.replace("\n", "")


@pytest.mark.parametrize("part", ["search/strategies", "search/executors", "search/runner.py",
                                  "search/study.py", "search/simulate.py", "search/pruners.py"])
def test_search_library_names_no_flag_in_an_error(part):
    files = [SRC / part] if part.endswith(".py") else sorted((SRC / part).glob("*.py"))
    for path in files:
        text = path.read_text()
        for needle in ('field="--', "field='--", 'expected="--'):
            assert needle not in text, f"{path.relative_to(SRC)} names a flag: {needle}"
