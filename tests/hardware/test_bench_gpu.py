"""bench/bench_gpu.py (the GPU check of the trainer against the planner) runs on CPU too."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import bench_gpu
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return bench_gpu


def test_cpu_run_writes_every_field(bench, tmp_path):
    out = tmp_path / "gpu.json"
    result = bench.main(["--cpu", "--models", "tiny-llama", "--steps", "1", "--out", str(out)])
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(result))
    assert data["device"] == "cpu" and "gpu" not in data and data["cpu"] and data["date"]
    assert {"python", "torch", "transformers", "peft", "bitsandbytes"} <= set(data["versions"])
    assert data["settings"]["seq"] == 64 and data["skipped_for_time"] == []
    cases = {c["method"]: c for c in data["cases"]}
    assert set(cases) == {"lora", "qlora", "full"}
    for method in ("lora", "full"):
        assert cases[method]["status"] == "ok", cases[method]
    if cases["qlora"]["status"] != "ok":  # bitsandbytes missing: skipped, and says why
        assert cases["qlora"]["status"] == "skipped" and "bitsandbytes" in cases["qlora"]["reason"]
    for c in (c for c in data["cases"] if c["status"] == "ok"):
        assert c["tokens"] == 2 * 64 and c["tokens_per_s"] > 0 and c["mfu"] == "unknown"
        assert c["peak_memory_mib"] > 0 and c["planner_estimate_mib"] > 0
        assert c["measured_over_estimate"] == pytest.approx(
            c["peak_memory_mib"] / c["planner_estimate_mib"], rel=1e-2)
        assert c["flops_per_token"] > 0 and c["micro_batch"] == 2 and c["params"] > 0
    assert cases["lora"]["trainable_params"] < cases["full"]["trainable_params"] == cases["full"]["params"]


def test_no_case_starts_after_the_time_budget(bench, tmp_path, capsys):
    result = bench.main(["--cpu", "--max-seconds", "0", "--methods", "lora,full",
                         "--out", str(tmp_path / "g.json")])
    assert result["skipped_for_time"] == ["tiny-llama/lora", "tiny-llama/full", "tiny-mistral/lora",
                                          "tiny-mistral/full"]
    assert all(c["status"] == "skipped" and "time budget" in c["reason"] for c in result["cases"])
    assert "time budget of 0 s reached" in capsys.readouterr().out


def test_peaks_and_flops(bench):
    from staytuned.hardware.planner import resolve_arch

    assert bench.bf16_peak("NVIDIA H200") == bench.bf16_peak("NVIDIA H100 80GB HBM3") == 989.0
    assert bench.bf16_peak("NVIDIA H100 PCIe") == 756.0 and bench.bf16_peak("NVIDIA L4") == 121.0
    assert bench.bf16_peak("NVIDIA A100-SXM4-80GB") == 312.0 and bench.bf16_peak("Tesla T4") is None
    arch = resolve_arch("llama-3-8b")
    full = bench.flops_per_token(arch, "full", 1024, 1024, 0)
    lora = bench.flops_per_token(arch, "lora", 1024, 1024, 0)
    # 6N (N: the weights a token passes through, 7.5B of 8.03B) plus attention; LoRA: 4N
    assert 6 * 7.5e9 < full < 6 * 7.5e9 * 1.1 and lora == pytest.approx(full * 2 / 3, rel=0.05)
