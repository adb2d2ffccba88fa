"""CLI: clear errors before any trial, tune/grid/export/simulate end to end (synthetic trials)."""

from __future__ import annotations

import json
import re

import pytest

from .conftest import SYNTH, demo_table


def _no_trials(tmp_path) -> bool:
    return not list(tmp_path.glob("runs/*/study.db"))


@pytest.mark.parametrize("flag, value, message", [
    ("--space", "BAD", "space file not found"),
    ("--strategy", "bayes", "unknown strategy"),
    ("--pruner", "sometimes", "unknown pruner"),
    ("--set", "learning_rat=1e-4", "unknown hyperparameter"),
    ("--task", "no-such-task", "no-such-task"),
    ("--model", "./nope/model", "unknown model"),
    ("--storage", "postgresql://nobody@127.0.0.1:1/x", "cannot open storage"),
    ("--strategy", "cbs-adaptive", "needs per-dataset scores"),
])
def test_bad_input_fails_before_any_trial(run_cli, tmp_path, flag, value, message):
    # one flag of a valid command (overriding its value there) made bad
    base = {"--task": "sst2", "--model": "tiny-llama", "--space": "preset:demo", "--trials": "1", flag: value}
    flat = [x for kv in base.items() for x in kv]
    res = run_cli("tune", *flat, "-q")
    assert res.exit_code == 2, res.output
    assert message in res.output.replace("\n", "")
    assert _no_trials(tmp_path)


def test_bad_space_file_names_file_and_param(run_cli, tmp_path):
    space = tmp_path / "s.yaml"
    space.write_text("params:\n  lora_rank: {type: int, values: [8]}\n")
    res = run_cli("tune", "--task", "sst2", "--model", "tiny-llama", "--space", str(space))
    assert res.exit_code == 2
    text = res.output.replace("\n", "")
    assert "s.yaml" in text and "lora_rank" in text and "lora_r" in text


def test_tune_prints_best_and_writes_json(run_cli, tmp_path):
    res = run_cli("tune", "--task", "t1", "--model", "m", "--space", "preset:demo", "--strategy",
                  "grid", "--trials", "3", "--trial-fn", SYNTH, "--json", "out.json", "-q")
    assert res.exit_code == 0, res.output
    assert "best: trial" in res.output and "learning_rate=" in res.output
    data = json.loads((tmp_path / "out.json").read_text())
    assert data["trials"]["finished"] == 3 and data["best"]["config"]["lr_scheduler"]
    assert (tmp_path / "runs" / "tune-t1-m-demo-grid" / "study.db").is_file()


@pytest.mark.slow
def test_grid_export_and_cbs_reads_it(run_cli, tmp_path):
    res = run_cli("grid", "--tasks", "a,b,c", "--models", "m", "--methods", "lora",
                  "--train-sizes", "10", "--trial-fn", SYNTH, "-q", "--name", "g")
    assert res.exit_code == 0, res.output
    for fmt in ("csv", "jsonl", "parquet"):
        res = run_cli("results", "export", "runs/g/study.db", "-o", f"t.{fmt}", "--json", f"w.{fmt}.json")
        assert res.exit_code == 0, res.output
        written = json.loads((tmp_path / f"w.{fmt}.json").read_text())
        assert written["rows"] == 24 and written["output"] == f"t.{fmt}"
        from staytuned.results import load_results

        table = load_results(tmp_path / f"t.{fmt}")
        assert len(table) == 24 and len(table.datasets) == 3 and len(table.config_ids) == 8
    res = run_cli("cbs", "rank", "t.csv", "--k", "2")
    assert res.exit_code == 0, res.output
    # and the exported grid is an offline source for cbs-adaptive
    res = run_cli("tune", "--task", "d", "--model", "m", "--space", "preset:demo", "--strategy",
                  "cbs-adaptive", "--cbs-table", "t.csv", "--trials", "3", "--trial-fn", SYNTH, "-q")
    assert res.exit_code == 0, res.output


def test_export_errors(run_cli, tmp_path):
    res = run_cli("results", "export", "nothing.db", "-o", "t.csv")
    assert res.exit_code == 2 and "not found" in res.output
    res = run_cli("results", "export", "nothing.db", "-o", "t.xlsx")
    assert res.exit_code == 2 and ".parquet" in res.output


def test_simulate_cli_json(run_cli, tmp_path):
    demo_table(tmp_path / "t.csv", n_datasets=4)
    res = run_cli("simulate", "t.csv", "--strategies", "grid,random,cbs,cbs-adaptive", "--k", "4",
                  "--seeds", "2", "--json", "sim.json", "-q")
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "sim.json").read_text())
    assert set(data["strategies"]) == {"grid", "random", "cbs", "cbs-adaptive", "static:cbs",
                                       "static:zeroshot", "static:greedy-portfolio",
                                       "static:best-average"}  # --rankers: all by default
    for curve in data["strategies"].values():
        assert len(curve["mean_best_of_k"]) == 4 and len(curve["solved_fraction"]) == 4
    res = run_cli("simulate", "t.csv", "--strategies", "cbs,magic")
    assert res.exit_code == 2 and "unknown strategy" in res.output


@pytest.mark.slow
def test_cbs_adaptive_starts_from_the_table_shipped_with_a_models_recommendations(run_cli, tmp_path, monkeypatch):
    import yaml

    import staytuned.cbs.recommendations as recommendations

    res = run_cli("grid", "--tasks", "a,b,c", "--models", "m", "--train-sizes", "10,100", "--trial-fn", SYNTH,
                  "-q", "--name", "g")
    assert res.exit_code == 0, res.output
    assert run_cli("results", "export", "runs/g/study.db", "-o", "shipped.csv").exit_code == 0
    preset = tmp_path / "m.yaml"
    preset.write_text(yaml.safe_dump({"source": {"table_file": "shipped.csv"}, "models": {"m": {"aliases": ["org/M"]}},
                                      "recommendations": [{"model": "m", "method": "lora", "train_size": 10, "rank": 1,
                                                           "config": {"learning_rate": 1e-3}}]}))
    shipped = recommendations._preset_files
    monkeypatch.setattr(recommendations, "_preset_files", lambda extra=(): shipped([preset, *extra]))
    # no --cbs-table; the table holds two train sizes: the nearest to 20 (10) is ranked
    res = run_cli("tune", "--task", "d", "--model", "org/M", "--space", "preset:demo", "--strategy", "cbs-adaptive",
                  "--train-size", "20", "--trials", "2", "--trial-fn", SYNTH, "-q", "--json", "o.json")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "o.json").read_text())["trials"]["finished"] == 2


def test_workers_auto_and_what_each_worker_got(run_cli, tmp_path, monkeypatch):
    """--workers auto parses; with (faked) GPUs the header says each worker's GPUs, and more
    workers than GPUs is refused before any study unless --share-gpus."""
    from staytuned.hardware import gpus

    args = ["tune", "--task", "t1", "--model", "m", "--space", "preset:demo", "--strategy",
            "grid", "--trials", "1", "--trial-fn", SYNTH, "--no-baseline", "--no-outputs"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(gpus, "gpu_count", lambda: 0)
    res = run_cli(*args, "--workers", "auto")
    assert res.exit_code == 0, res.output
    assert "1 trials, 1 worker(s)" in res.output.replace("\n", "")
    monkeypatch.setattr(gpus, "gpu_count", lambda: 2)
    res = run_cli(*args, "--workers", "3", "--study", "s2")
    text = res.output.replace("\n", "")
    assert res.exit_code == 2 and "field '--workers'" in text and "--share-gpus" in text, text
    assert not (tmp_path / "runs" / "s2").exists()
    # one worker holding both GPUs: it may use every GPU this process sees, so it runs here
    res = run_cli(*args, "--gpus-per-trial", "2", "--study", "s3")
    assert res.exit_code == 0, res.output
    assert "1 trials, 1 worker, GPUs 0,1" in res.output.replace("\n", "")


_LINE = re.compile(r"^\[\d\d:\d\d:\d\d\] ")


def test_simulate_and_report_print_progress_lines_when_stderr_is_not_a_terminal(run_cli, tmp_path) -> None:
    demo_table(tmp_path / "t.csv", n_datasets=3)
    res = run_cli("simulate", "t.csv", "--strategies", "grid,cbs", "--k", "3", "--seeds", "1")
    assert res.exit_code == 0, res.output
    lines = [x for x in res.output.splitlines() if _LINE.match(x)]
    # (2 strategies + the 4 static rankings) x 3 held-out datasets
    assert lines and re.search(r"simulating: 18/18 \(100%\)(, done in \S+)?$", lines[-1]), lines
    res = run_cli("report", "t.csv", "-o", "r.html")
    assert res.exit_code == 0, res.output
    lines = [x for x in res.output.splitlines() if _LINE.match(x)]
    assert len(lines) >= 3 and "report: written" in lines[-1] and "(100%)" in lines[-1]
    res = run_cli("simulate", "t.csv", "--strategies", "grid", "--k", "3", "--seeds", "1", "-q")
    assert not [x for x in res.output.splitlines() if _LINE.match(x)]
