"""`staytuned train --precision/--threads`: execution settings beside the config, warnings shown."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")

from staytuned.cli import build_app
from staytuned.hardware import probe as probe_mod
from staytuned.hardware.probe import MatmulSpeed

BASE = ["train", "--model", "tiny-llama", "--task", "sst2", "--train-size", "8", "--eval-size", "4",
        "--epochs", "1", "--max-seq-length", "96", "--batch-size", "4"]


def test_slow_bf16_is_run_and_the_warning_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe_mod, "cpu_matmul_speed", lambda *a, **k: MatmulSpeed(33.0, 1.2))
    res = CliRunner().invoke(build_app(), [*BASE, "--threads", "1", "--precision", "bf16", "--json", "-"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["status"] == "ok" and data["precision"] == "bf16" and "precision" not in data["config"]
    stderr = " ".join(res.stderr.split())  # Rich wraps long lines
    assert ("warning: bf16 matmul runs 28x slower than fp32 on this CPU (1.2 vs 33 GFLOP/s); "
            "use precision=auto") in stderr
    assert "threads: 1 (as requested)" in stderr


def test_threads_default_from_the_usable_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe_mod, "cpu_matmul_speed", lambda *a, **k: MatmulSpeed(33.0, 1.2))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    res = CliRunner().invoke(build_app(), [*BASE, "--eval-only"])
    assert res.exit_code == 0, res.output
    assert "threads: 1 (OMP_NUM_THREADS=1 is set)" in " ".join(res.stderr.split())
    assert "precision" in res.stdout and "fp32" in res.stdout  # auto on a slow-bf16 CPU


def test_bad_precision_names_the_flag() -> None:
    res = CliRunner().invoke(build_app(), [*BASE, "--precision", "fp8"])
    assert res.exit_code == 2
    stderr = " ".join(res.stderr.split())
    assert "field '--precision': unknown precision (got 'fp8')" in stderr and "auto, fp32, bf16, fp16" in stderr
