"""`staytuned doctor`: text and JSON description of this machine."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from staytuned.cli import build_app

KEYS = {"staytuned", "python", "platform", "cpu", "bf16_fast", "matmul", "threads", "gpus", "packages",
        "precision_auto", "notes"}


def test_doctor_json_to_stdout() -> None:
    pytest.importorskip("torch")
    res = CliRunner().invoke(build_app(), ["doctor", "--json", "-"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert set(data) == KEYS
    assert data["cpu"]["model"] and data["cpu"]["usable_cpus"] >= 1
    assert data["matmul"]["fp32_gflops"] > 0 and data["matmul"]["bf16_gflops"] > 0
    assert data["bf16_fast"] == (data["matmul"]["bf16_ratio"] >= 0.9)
    assert data["threads"]["threads"] >= 1 and data["threads"]["reason"]
    assert set(data["packages"]) >= {"torch", "transformers", "peft", "bitsandbytes", "optuna", "ray"}
    assert all(v for v in data["packages"].values())  # a version or "not installed"
    cpu_choice = data["precision_auto"]["cpu"]
    assert cpu_choice["dtype"] == ("bf16" if data["bf16_fast"] else "fp32")
    assert len(data["precision_auto"]) == 1 + len(data["gpus"])


def test_doctor_text(tmp_path) -> None:
    pytest.importorskip("torch")
    res = CliRunner().invoke(build_app(), ["doctor", "--json", str(tmp_path / "d.json")])
    assert res.exit_code == 0, res.output
    for needle in ("bf16 matmul", "GFLOP/s", "threads", "precision=auto on cpu", "bitsandbytes"):
        assert needle in res.stdout
    assert set(json.loads((tmp_path / "d.json").read_text())) == KEYS
