"""`staytuned train`: exit codes, JSON output, flags and config files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")

from staytuned.cli import build_app

BASE = ["train", "--model", "tiny-llama", "--task", "sst2", "--train-size", "8", "--eval-size", "4",
        "--epochs", "1", "--max-seq-length", "96", "--batch-size", "4", "--threads", "1"]


def _run(args: list[str]):
    return CliRunner().invoke(build_app(), args)


def test_train_writes_json_and_prints_metrics(tmp_path: Path) -> None:
    res = _run([*BASE, "--method", "full", "--lr", "1e-3", "--scheduler", "cosine", "--hp", "warmup_ratio=0.1",
                "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["status"] == "ok" and data["metric"] == "accuracy"
    assert data["config"]["method"] == "full" and data["config"]["learning_rate"] == 1e-3
    assert data["config"]["lr_scheduler"] == "cosine" and data["config"]["warmup_ratio"] == 0.1
    for key in ("score", "metrics", "runtime_s", "train_tokens_per_s", "peak_memory_mb", "loss_curve"):
        assert key in data
    assert "accuracy" in res.stdout and "train tokens/s" in res.stdout


def test_eval_only_and_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "hp.yaml"
    cfg.write_text("config:\n  method: lora\n  lora_r: 4\n  max_seq_length: 64\n")
    res = _run([*BASE, "--config", str(cfg), "--eval-only", "--json", "-"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["steps"] == 0 and data["n_train"] == 0 and data["config"]["lora_r"] == 4
    assert data["config"]["max_seq_length"] == 96  # flags win over the file


@pytest.mark.parametrize("args,needle", [
    (["--lr", "-1"], "learning_rate"),
    (["--hp", "lora_alpha=0"], "lora_alpha"),
    (["--hp", "nonsense"], "NAME=VALUE"),
    (["--train-size", "zero"], "--train-size"),
    (["--label-scoring", "vote"], "label scoring"),
])
def test_bad_input_exits_2(args: list[str], needle: str) -> None:
    res = _run([*BASE, *args])
    assert res.exit_code == 2, res.output
    assert needle in res.output


def test_unknown_task_exits_2() -> None:
    res = _run(["train", "--model", "tiny-llama", "--task", "no-such-task"])
    assert res.exit_code == 2 and "no-such-task" in res.output


def test_failed_trial_exits_1(tmp_path: Path) -> None:
    res = _run([*BASE, "--lr", "1e30", "--epochs", "3", "--json", str(tmp_path / "f.json")])
    assert res.exit_code == 1, res.output
    data = json.loads((tmp_path / "f.json").read_text())
    assert data["status"] == "failed" and "nan" in data["error"] and data["score"] is None
