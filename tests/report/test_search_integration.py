"""Report and export on a storage written by the real search engine (`staytuned grid`, synthetic trials)."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from staytuned.cli import build_app

runner = CliRunner()
SYNTH = "staytuned.search.synthetic:synthetic_trial"


def run(*args: str):
    res = runner.invoke(build_app(), list(args))
    assert res.exit_code == 0, res.output
    return res


@pytest.mark.slow
def test_report_and_export_on_a_grid_storage(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'g.db'}"
    run("grid", "--tasks", "sst2,trec", "--models", "tiny-llama", "--train-sizes", "10",
        "--trial-fn", SYNTH, "-q", "--storage", url)
    # a second grid whose learning rate diverges: every trial fails with the trial's own error
    run("grid", "--name", "bad", "--tasks", "sst2", "--models", "tiny-llama", "--train-sizes", "10",
        "--trial-fn", SYNTH, "--set", "learning_rate=0.1", "-q", "--storage", url)
    res = run("report", url, "-o", "r.html", "--png-dir", "png", "--json", "-", "-q")
    info = json.loads(res.stdout)
    assert info["datasets"] == ["sst2", "trec"] and len(info["studies"]) == 3
    assert info["sections"]["pareto"].startswith("not applicable")
    assert all(v == "shown" for k, v in info["sections"].items() if k != "pareto")
    page = (tmp_path / "r.html").read_text()
    assert page.count("loss is NaN (diverged)") == 8
    # the same runs through the canonical table (`staytuned results export`)
    run("results", "export", url, "-o", "res.csv")
    import csv

    with (tmp_path / "res.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    ok = [r for r in rows if r["status"] == "ok"]
    assert ok and all(json.loads(r["metrics"])["accuracy"] == float(r["score"]) for r in ok)
    assert all(r["n_train"] == "10" and r["seed"] == "0" and json.loads(r["versions"]) for r in rows)
    info_csv = json.loads(run("report", "res.csv", "-o", "t.html", "--json", "-", "-q").stdout)
    assert info_csv["n_runs"] == info["n_runs"] == 24
    assert info_csv["sections"]["coverage"] == "shown" and info_csv["sections"]["failed"] == "shown"
    # export the best trial of one cell: the stored full config, not only the searched params
    study = "grid/trec/tiny-llama/lora/10"
    run("export", "--to", "axolotl", "--from-study", url, "--study", study, "--model", "Qwen/Qwen2.5-0.5B",
        "-o", "ax.yaml", "-q")
    cfg = yaml.safe_load((tmp_path / "ax.yaml").read_text())
    import optuna

    best = optuna.load_study(study_name=study, storage=url).best_trial
    stored = best.user_attrs["config"]
    assert cfg["learning_rate"] == stored["learning_rate"] and cfg["sequence_len"] == stored["max_seq_length"]
    assert cfg["micro_batch_size"] * cfg["gradient_accumulation_steps"] == stored["batch_size"]
