"""precision=auto is measured: bf16 on a CPU only where it is fast; GPUs by what they support."""

from __future__ import annotations

import warnings

import pytest

from staytuned.errors import InputError
from staytuned.hardware import probe as probe_mod
from staytuned.hardware.precision import (
    SlowPrecisionWarning,
    check_precision,
    choose_precision,
    load_dtype,
)
from staytuned.hardware.probe import CpuInfo, GpuInfo, MatmulSpeed, Probe

AVX2 = CpuInfo(model="AMD EPYC (AVX2 only)", flags=("avx2", "fma"), logical_cpus=2, usable_cpus=2)
BF16_CPU = CpuInfo(model="AMD EPYC", flags=("avx2", "fma", "avx512f", "avx512_bf16"), logical_cpus=2,
                   usable_cpus=2)
SLOW = Probe(AVX2, MatmulSpeed(fp32_gflops=33.0, bf16_gflops=1.2))
FAST = Probe(BF16_CPU, MatmulSpeed(fp32_gflops=99.0, bf16_gflops=202.0))
A100 = GpuInfo(index=0, name="NVIDIA A100-SXM4-80GB", total_memory_mb=81920, capability=(8, 0), bf16=True)
T4 = GpuInfo(index=1, name="Tesla T4", total_memory_mb=15360, capability=(7, 5), bf16=False)
P100 = GpuInfo(index=2, name="Tesla P100", total_memory_mb=16384, capability=(6, 0), bf16=False)
GPUS = Probe(BF16_CPU, MatmulSpeed(99.0, 202.0), gpus=(A100, T4, P100))


@pytest.fixture
def no_measuring(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the CPU was measured although the probe was given or not needed")

    monkeypatch.setattr(probe_mod, "cpu_matmul_speed", refuse)
    monkeypatch.setattr(probe_mod, "measure_matmul", refuse)


def test_auto_on_cpu_follows_the_measured_speed(no_measuring: None) -> None:
    slow = choose_precision("auto", "cpu", SLOW)
    assert (slow.dtype, slow.autocast, slow.grad_scaler, slow.load_dtype) == ("fp32", False, False, "fp32")
    assert "28x slower than fp32" in slow.reason and "1.2 vs 33 GFLOP/s" in slow.reason
    fast = choose_precision("auto", "cpu", FAST)
    assert (fast.dtype, fast.autocast, fast.grad_scaler, fast.load_dtype) == ("bf16", True, False, "fp32")
    assert "2.04x as fast" in fast.reason


def test_the_threshold_is_a_share_of_fp32(no_measuring: None) -> None:
    # Native bf16 that is only a little slower than fp32 still counts as fast; 0.8x does not.
    assert choose_precision("auto", "cpu", Probe(BF16_CPU, MatmulSpeed(100.0, 91.0))).dtype == "bf16"
    assert choose_precision("auto", "cpu", Probe(BF16_CPU, MatmulSpeed(100.0, 80.0))).dtype == "fp32"


def test_explicit_bf16_where_slow_runs_and_warns_with_the_slowdown(no_measuring: None) -> None:
    with pytest.warns(SlowPrecisionWarning) as record:
        choice = choose_precision("bf16", "cpu", SLOW)
    assert str(record[0].message) == ("bf16 matmul runs 28x slower than fp32 on this CPU "
                                      "(1.2 vs 33 GFLOP/s); use precision=auto")
    assert choice.dtype == "bf16" and choice.autocast and choice.slowdown == 27.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert choose_precision("bf16", "cpu", FAST).dtype == "bf16"  # fast: no warning
        assert choose_precision("bf16", "cpu", SLOW, warn=False).dtype == "bf16"


def test_fp32_and_loading_never_measure(no_measuring: None) -> None:
    assert choose_precision("fp32", "cpu").dtype == "fp32"
    assert choose_precision(None, "cpu", SLOW).requested == "auto"
    assert load_dtype("auto", "cpu") == "fp32" and load_dtype("bf16", None) == "fp32"


def test_gpu_branches_with_a_faked_description(no_measuring: None) -> None:
    a100 = choose_precision("auto", "cuda:0", GPUS)
    assert (a100.dtype, a100.autocast, a100.grad_scaler, a100.load_dtype) == ("bf16", True, False, "bf16")
    assert choose_precision("auto", "cuda", GPUS).dtype == "bf16"  # "cuda" = device 0 of the probe
    t4 = choose_precision("auto", "cuda:1", GPUS)
    assert (t4.dtype, t4.autocast, t4.grad_scaler, t4.load_dtype) == ("fp16", True, True, "fp32")
    assert "Tesla T4" in t4.reason and "loss scaling" in t4.reason
    p100 = choose_precision("auto", "cuda:2", GPUS)
    assert (p100.dtype, p100.autocast, p100.grad_scaler) == ("fp32", False, False)
    assert "6.0" in p100.reason
    assert choose_precision("fp16", "cuda:0", GPUS).grad_scaler  # explicit fp16 always scales the loss
    assert choose_precision("fp32", "cuda:1", GPUS).dtype == "fp32"
    assert choose_precision("auto", "cuda:7", GPUS).dtype == "fp32"  # no description: the safe choice


def test_unknown_precision_names_the_field() -> None:
    assert check_precision("BFloat16") == "bf16" and check_precision(None) == "auto"
    with pytest.raises(InputError) as info:
        choose_precision("fp8", "cpu", FAST)
    assert info.value.field == "precision" and info.value.value == "fp8"
    assert "auto, fp32, bf16, fp16" in str(info.value)
    with pytest.raises(InputError, match="device"):
        choose_precision("auto", "cuda:x", GPUS)
