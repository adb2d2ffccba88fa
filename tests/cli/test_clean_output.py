"""Clean output: third-party deprecation noise filtered unless --verbose, a header whose storage
URL never breaks at the terminal's width, and one study name everywhere (its folder too)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SYNTH = "staytuned.search.synthetic:synthetic_trial"

# A trial function that warns like transformers does once per trial (the warning is attributed
# to a transformers module, as Python attributes a library's own warnings.warn).
NOISY = '''
import logging
import warnings

from staytuned.search.synthetic import synthetic_trial


def trial(**kw):
    warnings.warn_explicit("`past_key_values` is deprecated (fake)", FutureWarning,
                           filename="/site-packages/transformers/modeling_utils.py", lineno=1,
                           module="transformers.modeling_utils")
    # bitsandbytes logs this at import on CPUs with AVX512-BF16
    logging.getLogger("bitsandbytes.backends.cpu.ops").warning("Failed to load CPU gemm_4bit_forward (fake)")
    return synthetic_trial(**kw)
'''


def _staytuned(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("staytuned")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c",
                                            "from staytuned.cli import main; main()"]
    # stdout and stderr are pipes: not a terminal, as under nohup, Slurm or CI
    return subprocess.run(cmd + args, cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **env})


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_third_party_deprecations_are_filtered_unless_verbose(tmp_path, workers):
    (tmp_path / "noisy_trial.py").write_text(NOISY)
    args = ["tune", "--task", "t", "--model", "m", "--space", "preset:demo", "--strategy",
            "random", "--trials", "2", "--workers", workers, "--trial-fn", "noisy_trial:trial"]
    quiet = _staytuned(args, tmp_path, PYTHONPATH=str(tmp_path))
    assert quiet.returncode == 0, quiet.stderr
    assert "past_key_values" not in quiet.stderr + quiet.stdout
    assert "gemm_4bit_forward" not in quiet.stderr + quiet.stdout
    loud = _staytuned([*args, "--trials", "3", "--verbose"], tmp_path, PYTHONPATH=str(tmp_path))
    assert loud.returncode == 0, loud.stderr
    assert "FutureWarning: `past_key_values` is deprecated (fake)" in loud.stderr
    assert "Failed to load CPU gemm_4bit_forward (fake)" in loud.stderr


@pytest.mark.slow
def test_header_keeps_the_storage_url_on_one_line_at_80_columns(tmp_path):
    runs = tmp_path / "a-rather-long-folder-of-runs" / "so-that-the-header-passes-80-columns"
    res = _staytuned(["tune", "--task", "t", "--model", "m", "--space", "preset:demo",
                      "--trials", "1", "--trial-fn", SYNTH, "--runs-dir", str(runs)],
                     tmp_path, COLUMNS="80")
    assert res.returncode == 0, res.stderr
    url = f"sqlite:///{runs / 'tune-t-m-demo-tpe' / 'study.db'}"
    header = [line for line in res.stderr.splitlines() if line.startswith("study ")]
    assert header and url in header[0], res.stderr
    assert header[0].endswith("1 trials, 1 worker(s)")


def test_study_folder_is_the_study_name(tmp_path, monkeypatch):
    optuna = pytest.importorskip("optuna")
    from typer.testing import CliRunner

    from staytuned.cli import build_app

    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(build_app(), [
        "tune", "--task", "t", "--model", "m", "--space", "preset:demo", "--strategy", "cbs+tpe",
        "--trials", "1", "--trial-fn", SYNTH, "-q"])
    assert res.exit_code == 0, res.output
    (folder,) = (tmp_path / "runs").iterdir()
    assert folder.name == "tune-t-m-demo-cbs+tpe"
    names = [s.study_name for s in optuna.get_all_study_summaries(
        f"sqlite:///{folder / 'study.db'}", include_best_trial=False)]
    assert names == [folder.name]


def test_default_storage_keeps_older_folders_findable(tmp_path):
    from staytuned.search.storage import default_storage_url, folder_name

    assert folder_name("tune-t-m-demo-cbs+tpe") == "tune-t-m-demo-cbs+tpe"
    assert folder_name("a/b c:d%e?f") == "a_b_c_d_e_f"
    assert folder_name("..") == "study"
    name = "tune-t-m-demo-cbs+tpe"
    assert default_storage_url(name, tmp_path) == f"sqlite:///{tmp_path / name / 'study.db'}"
    legacy = tmp_path / "tune-t-m-demo-cbs_tpe"  # where older versions stored this study
    legacy.mkdir()
    (legacy / "study.db").write_bytes(b"")
    assert default_storage_url(name, tmp_path) == f"sqlite:///{legacy / 'study.db'}"
    (tmp_path / name).mkdir()
    (tmp_path / name / "study.db").write_bytes(b"")  # both: the study's own name wins
    assert default_storage_url(name, tmp_path) == f"sqlite:///{tmp_path / name / 'study.db'}"
