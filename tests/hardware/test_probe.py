"""The hardware probe: CPU flags, one real (cached) bf16/fp32 matmul measurement, light imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from staytuned.hardware import probe as probe_mod
from staytuned.hardware.probe import (
    CACHE_FILE,
    CpuInfo,
    GpuInfo,
    MatmulSpeed,
    Probe,
    cpu_info,
)

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse2 avx avx2 fma bmi2 sha_ni
processor\t: 1
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse2 avx avx2 fma bmi2 sha_ni
"""


def test_cpu_flags_from_proc_cpuinfo(tmp_path: Path) -> None:
    (tmp_path / "cpuinfo").write_text(CPUINFO)
    cpu = cpu_info(tmp_path / "cpuinfo")
    assert cpu.model == "AMD EPYC 7B13" and cpu.flags == ("avx2", "fma")
    assert not cpu.native_bf16 and cpu.usable_cpus >= 1
    amx = CpuInfo("Xeon", ("avx2", "avx512f", "amx_tile", "amx_bf16"), 8, 8)
    assert amx.native_bf16


def test_one_real_probe_is_measured_once_and_then_read_from_the_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    first = probe_mod.cpu_matmul_speed(cache_dir=tmp_path)
    assert first.fp32_gflops > 0 and first.bf16_gflops > 0 and not first.cached
    assert first.threads == 1 and first.torch_version
    stored = json.loads((tmp_path / CACHE_FILE).read_text())
    (key, entry), = stored.items()
    cpu = cpu_info()
    assert cpu.model in key and first.torch_version in key
    assert entry["fp32_gflops"] == first.fp32_gflops and entry["bf16_gflops"] == first.bf16_gflops

    def refuse(*args, **kwargs):
        raise AssertionError("measured again although the cache holds this machine")

    monkeypatch.setattr(probe_mod, "measure_matmul", refuse)
    again = probe_mod.cpu_matmul_speed(cache_dir=tmp_path)
    assert again.cached and (again.fp32_gflops, again.bf16_gflops) == (first.fp32_gflops, first.bf16_gflops)
    # Another CPU (or torch) is another key: it is measured, and both entries stay.
    monkeypatch.setattr(probe_mod, "measure_matmul", lambda: MatmulSpeed(33.0, 1.2, torch_version="x"))
    other = CpuInfo("AVX2-only EPYC", ("avx2", "fma"), 2, 2)
    assert probe_mod.cpu_matmul_speed(other, cache_dir=tmp_path).bf16_gflops == 1.2
    assert len(json.loads((tmp_path / CACHE_FILE).read_text())) == 2


def test_a_corrupt_cache_is_measured_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    (tmp_path / CACHE_FILE).write_text("{not json")
    monkeypatch.setattr(probe_mod, "measure_matmul", lambda: MatmulSpeed(50.0, 100.0, torch_version="t"))
    assert probe_mod.cpu_matmul_speed(cache_dir=tmp_path).bf16_ratio == 2.0
    assert json.loads((tmp_path / CACHE_FILE).read_text())


def test_probe_to_dict_is_json() -> None:
    p = Probe(CpuInfo("X", ("avx2",), 4, 2), MatmulSpeed(33.0, 1.2),
              gpus=(GpuInfo(0, "Tesla T4", 15360.0, (7, 5), False),))
    d = json.loads(json.dumps(p.to_dict()))
    assert d["matmul"]["bf16_ratio"] == round(1.2 / 33.0, 4) and d["gpus"][0]["fp16"] is True
    assert d["cpu"]["native_bf16"] is False and d["gpus"][0]["capability"] == [7, 5]


def test_the_hardware_package_imports_no_heavy_library() -> None:
    code = ("import sys, staytuned.hardware, staytuned.hardware.doctor, staytuned.hardware.probe; "
            "heavy = [m for m in ('torch', 'transformers', 'peft', 'ray', 'plotly', 'pandas') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_restricted_instruction_set_is_probed_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """bench_main_job --isa avx2 restricts torch's kernels: the bf16 speed cached for the full
    instruction set must not decide precision there."""
    from staytuned.hardware.probe import probe_key

    cpu = CpuInfo(model="AMD EPYC", flags=("avx2", "avx512_bf16"), logical_cpus=2, usable_cpus=2, machine="x86_64")
    for name in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS"):
        monkeypatch.delenv(name, raising=False)
    full = probe_key(cpu, "2.13.0")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert probe_key(cpu, "2.13.0") != full
    monkeypatch.delenv("ATEN_CPU_CAPABILITY")
    assert probe_key(cpu, "2.13.0") == full
