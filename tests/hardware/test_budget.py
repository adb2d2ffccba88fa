"""The memory a trial may use, and the planner's decision before it trains (no torch here).

The thresholds come from the planner's own estimates, so each case sits between two settings
by construction: a change in the formulas moves the budgets with it, not the verdicts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from staytuned.errors import InputError
from staytuned.hardware.budget import (
    available_memory,
    cgroup_memory_room,
    fit_before_loading,
    fit_trial,
    memory_budget_of,
)
from staytuned.hardware.planner import DEFAULT_MARGIN, GIB, Device, estimate, resolve_arch
from staytuned.hparams.train import TrainConfig

ARCH = resolve_arch("smollm2-135m")
SEQ = 512


def _cfg(**values) -> TrainConfig:
    return TrainConfig.from_dict({"batch_size": 8, "max_seq_length": SEQ, **values})


def _est(micro: int, checkpointing: bool, method: str = "lora", seq: int = SEQ) -> int:
    return estimate(ARCH, device=Device("cpu", 2**50), method=method, precision="bf16", max_seq_length=seq,
                    micro_batch=micro, gradient_checkpointing=checkpointing).total


def _between(low: int, high: int) -> int:
    """A budget whose usable part (less the margin) lies halfway between two estimates."""
    assert low < high
    return int((low + high) / 2 / (1 - DEFAULT_MARGIN))


def _fit(cfg: TrainConfig, budget: int, *, micro: int = 8, fixed: bool = False, checkpointing: str = "auto"):
    fit = fit_trial(ARCH, cfg, precision="bf16", device="cpu", budget=budget, seq_len=SEQ, micro_batch=micro,
                    micro_fixed=fixed, checkpointing=checkpointing)
    assert fit is not None
    return fit


# ------------------------------------------------------------------------------ what is available


def _cgroup_v2(tmp_path: Path, limit: str, current: int, inactive: int) -> tuple[Path, Path]:
    root = tmp_path / "cg"
    (root / "job").mkdir(parents=True)
    (root / "job" / "memory.max").write_text(limit + "\n")
    (root / "job" / "memory.current").write_text(f"{current}\n")
    (root / "job" / "memory.stat").write_text(f"anon 1\ninactive_file {inactive}\nactive_file 5\n")
    proc = tmp_path / "cgroup"
    proc.write_text("0::/job\n")
    return root, proc


def test_cgroup_v2_room_is_limit_less_usage_plus_reclaimable_cache(tmp_path: Path) -> None:
    root, proc = _cgroup_v2(tmp_path, str(8 * GIB), 6 * GIB, GIB)
    assert cgroup_memory_room(root, proc) == 3 * GIB
    root, proc = _cgroup_v2(tmp_path / "unlimited", "max", 6 * GIB, GIB)
    assert cgroup_memory_room(root, proc) is None


def test_cgroup_v1_room_and_the_tightest_ancestor(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    inner = root / "memory" / "a" / "b"
    inner.mkdir(parents=True)
    for d, limit, usage in ((root / "memory" / "a", 4 * GIB, 3 * GIB), (inner, 16 * GIB, 2 * GIB)):
        (d / "memory.limit_in_bytes").write_text(f"{limit}\n")
        (d / "memory.usage_in_bytes").write_text(f"{usage}\n")
    (inner / "memory.stat").write_text(f"total_inactive_file {GIB}\n")
    (root / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # unlimited
    (root / "memory" / "memory.usage_in_bytes").write_text("1\n")
    proc = tmp_path / "cgroup"
    proc.write_text("4:memory:/a/b\n0::/\n")
    assert cgroup_memory_room(root, proc) == GIB  # the parent's 4 GiB limit binds, not the child's


def test_available_cpu_memory_includes_this_process() -> None:
    from staytuned.finetune.memory import current_rss_mb

    assert available_memory("cpu") > current_rss_mb() * 2**20 > 0


def test_memory_budget_is_bytes_a_size_or_what_is_available() -> None:
    assert memory_budget_of("cpu", "6GB") == 6 * GIB
    assert memory_budget_of("cpu", 123456789) == 123456789
    assert memory_budget_of("cpu", None) > 0
    for bad in ("lots", -1, 0, True):
        with pytest.raises(InputError, match="memory_budget"):
            memory_budget_of("cpu", bad)


# ------------------------------------------------------------------------------ the decision


def test_ample_memory_changes_nothing() -> None:
    fit = _fit(_cfg(), 2**40, micro=5)
    assert (fit.fits, fit.micro_batch_size, fit.gradient_checkpointing, fit.note) == (True, 5, False, "")
    assert fit.estimate == _est(5, False) and not fit.reason


def test_a_free_micro_batch_shrinks_to_the_largest_that_fits_split_evenly() -> None:
    # 5 fits and 6 does not: two forward passes of 4 (not 5 + 3).
    fit = _fit(_cfg(), _between(_est(5, False), _est(6, False)))
    assert (fit.fits, fit.micro_batch_size, fit.gradient_checkpointing) == (True, 4, False)
    assert fit.note.startswith("micro-batch 8 -> 4 to fit")


def test_auto_checkpointing_only_when_micro_batch_1_does_not_fit_without() -> None:
    fit = _fit(_cfg(), _between(_est(1, True), _est(1, False)))
    assert fit.fits and fit.gradient_checkpointing and fit.micro_batch_size >= 1
    assert "gradient checkpointing on" in fit.note


def test_a_fixed_micro_batch_gets_checkpointing_when_auto_and_is_refused_when_off() -> None:
    budget = _between(_est(4, True), _est(4, False))
    fit = _fit(_cfg(), budget, micro=4, fixed=True)
    assert (fit.fits, fit.micro_batch_size, fit.gradient_checkpointing) == (True, 4, True)
    refused = _fit(_cfg(), budget, micro=4, fixed=True, checkpointing="off")
    assert not refused.fits
    reason = refused.reason
    assert reason.startswith("does not fit in memory: lora, r=16, adamw, bf16, seq 512, micro-batch 4")
    assert f"needs {_est(4, False) / GIB:.2f} GiB" in reason  # the estimate
    assert f"cpu has {budget / GIB:.2f} GiB available" in reason  # the memory available
    assert "nearest setting that fits: micro-batch" in reason  # what would
    on = _fit(_cfg(), budget, micro=4, fixed=True, checkpointing="on")
    assert on.fits and on.gradient_checkpointing and not on.note  # as asked: nothing changed


def test_nothing_fitting_names_another_method_or_nothing() -> None:
    full_min, lora_min = _est(1, True, "full"), _est(1, True, "lora")
    fit = _fit(_cfg(method="full"), _between(lora_min, full_min))
    assert not fit.fits
    assert "nearest setting that fits: LoRA instead of full fine-tuning" in fit.reason
    assert "the method is a hyperparameter, so that is another config" in fit.reason
    tiny = _fit(_cfg(method="full"), 100 * 2**20)
    assert not tiny.fits and "nothing fits on this device, not even QLoRA" in tiny.reason


def test_the_check_before_loading_counts_no_activations() -> None:
    static = estimate(ARCH, device=Device("cpu", 2**50), method="full", precision="bf16", max_seq_length=1,
                      micro_batch=1, gradient_checkpointing=True, logit_positions=1).total
    refused = fit_before_loading(ARCH, _cfg(method="full"), precision="bf16", device="cpu",
                                 budget=int(static * 0.8), micro_batch=None, checkpointing="auto")
    assert refused is not None and not refused.fits
    assert refused.reason.startswith(f"does not fit in memory: full fine-tuning needs {static / GIB:.2f} GiB "
                                     "before any activations")
    ok = fit_before_loading(ARCH, _cfg(method="full"), precision="bf16", device="cpu",
                            budget=int(static * 1.2), micro_batch=None, checkpointing="auto")
    assert ok is not None and ok.fits


def test_what_the_planner_cannot_model_is_not_planned() -> None:
    assert fit_trial(ARCH, _cfg(lora_target_modules="c_attn"), precision="bf16", device="cpu", budget=GIB,
                     seq_len=SEQ, micro_batch=8, micro_fixed=False, checkpointing="auto") is None
    assert fit_trial(ARCH, _cfg(), precision="bf16", device="mps", budget=GIB, seq_len=SEQ, micro_batch=8,
                     micro_fixed=False, checkpointing="auto") is None
    with pytest.raises(InputError, match="gradient_checkpointing"):
        fit_trial(ARCH, _cfg(), precision="bf16", device="cpu", budget=GIB, seq_len=SEQ, micro_batch=8,
                  micro_fixed=False, checkpointing="maybe")
