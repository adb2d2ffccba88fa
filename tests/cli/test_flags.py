"""Library errors name API parameters; the CLI renders them as its flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from staytuned.cli._flags import as_flags, render
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


def test_names_in_backticks_are_rendered_and_a_parameter_file_too():
    text = "no exact equivalent (without `strict`, the nearest decay); see `ColumnSpec.hps`, `other`"
    assert render(text, {"strict": "--strict", "ColumnSpec.hps": "--hp-cols"}) == \
        "no exact equivalent (without --strict, the nearest decay); see --hp-cols, `other`"
    exc = InputError("unknown decoding parameter", file="overrides", field="temprature")
    out = as_flags(exc, {"overrides": "--set"})
    assert str(out) == "--set, field 'temprature': unknown decoding parameter"
    assert out.file == "--set" and out.field == "temprature"


@pytest.fixture()
def cli(run_cli):
    return run_cli  # tests/conftest.py: the CLI in-process, inside tmp_path


TUNE = ["tune", "--task", "t1", "--model", "m", "--space", "preset:demo", "--trial-fn", SYNTH, "-q"]


@pytest.mark.parametrize(("args", "flag"), [
    (["--workers", "0"], "--workers"),
    (["--workers", "x"], "--workers"),
    (["--gpus-per-trial", "-1"], "--gpus-per-trial"),
    (["--backend", "ray", "--share-gpus"], "--share-gpus"),
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


def _message_strings(path: Path):
    """(line, text) of the string literals of a module that are not docstrings."""
    import io
    import tokenize

    prev = None
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        docstring = prev is None or prev.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                                                  tokenize.NL)
        if tok.type in (tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", -1)) and not docstring:
            yield tok.start[0], tok.string
        if tok.type not in (tokenize.COMMENT, tokenize.NL):
            prev = tok


def test_no_library_message_names_a_flag():
    """Outside cli/ a flag appears only inside a whole command in backticks
    (`staytuned recommend --model X`) or a pip command; CSS custom properties are no flags."""
    import re

    flag = re.compile(r"(?<![\w(-])--[a-z][\w-]*(?![\w-]*[:)])")
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if "cli" in path.relative_to(SRC).parts:
            continue
        for line, text in _message_strings(path):
            if not text.lstrip("rf").strip("\"'").startswith("pip install") and \
                    flag.search(re.sub(r"`[^`]*`", "", text)):
                found.append(f"{path.relative_to(SRC)}:{line}: {text[:60]}")
    assert not found, "library messages name flags:\n" + "\n".join(found)
