"""The memory a trial may use, and the planner's decision made before the trial starts.

``run_trial`` asks :func:`fit_trial` twice: before loading the model (from its ``config.json``,
without activations: can the weights, gradients and optimizer states fit at all?) and before
training (with the encoded examples' longest sequence and answer). The second answer picks the
micro-batch and, with ``gradient_checkpointing="auto"``, whether to checkpoint:

- micro-batch and checkpointing both fixed by the user: the trial runs as asked, or is refused;
- micro-batch fixed, checkpointing auto: off when that fits, else on, else refused;
- micro-batch free: the largest micro-batch up to the trainer's own choice that fits (no
  checkpointing preferred, as :func:`staytuned.hardware.planner.choose` does), balanced so the
  micro-batches split the effective batch evenly; refused when nothing fits.

When memory is ample nothing changes: the trainer's micro-batch and no checkpointing.

What is available (:func:`available_memory`): on CUDA the device's free memory plus what this
process's allocator already holds; on CPU ``MemAvailable`` (or the room left under the cgroup
memory limit, when lower) plus this process's resident memory, since the estimate counts the
whole process (runtime and loaded weights included). Other processes that start later are not
foreseen: the margin (10% by default) is all the slack there is.

Light module: stdlib only; torch is imported only to read CUDA memory.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from staytuned.errors import InputError
from staytuned.hardware.cgroups import CGROUP_ROOT, PROC_SELF_CGROUP, cgroup_dirs, read_value, self_cgroups
from staytuned.hardware.planner import (
    _METHOD_NAMES,
    DEFAULT_MARGIN,
    GIB,
    Device,
    MemoryPlan,
    ModelArch,
    TrialSetting,
    choose,
    estimate,
    parse_size,
)
from staytuned.hparams.schema import check_execution

# ---------------------------------------------------------------- what is available


def _meminfo(key: str, path: Path = Path("/proc/meminfo")) -> int | None:
    for line in (read_value(path) or "").splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return None


def cgroup_memory_room(root: Path | None = None, proc_self_cgroup: Path | None = None) -> int | None:
    """Bytes this process's cgroup (or an ancestor) may still take before its memory limit:
    limit - usage + inactive page cache (reclaimable); None when no limit applies."""
    root = Path(root) if root is not None else CGROUP_ROOT
    groups = self_cgroups(Path(proc_self_cgroup) if proc_self_cgroup is not None else PROC_SELF_CGROUP)
    rooms: list[int] = []
    layouts = [(root, groups.get("", "/"), "memory.max", "memory.current", "inactive_file")]
    if (root / "memory").is_dir():  # cgroup v1
        layouts.append((root / "memory", groups.get("memory", "/"), "memory.limit_in_bytes",
                        "memory.usage_in_bytes", "total_inactive_file"))
    for base, relative, limit_name, usage_name, inactive_name in layouts:
        for d in cgroup_dirs(base, relative):
            limit, usage = read_value(d / limit_name), read_value(d / usage_name)
            if not (limit and limit.isdigit() and usage and usage.isdigit()) or int(limit) >= 2**60:
                continue
            inactive = 0
            for line in (read_value(d / "memory.stat") or "").splitlines():
                name, _, value = line.partition(" ")
                if name == inactive_name and value.strip().isdigit():
                    inactive = int(value)
            rooms.append(max(0, int(limit) - int(usage) + inactive))
    return min(rooms) if rooms else None


def available_memory(device: str = "cpu") -> int:
    """Bytes a trial in this process may use on ``device`` (0 where unknown), see the module doc."""
    if str(device).startswith("cuda"):
        import torch

        given = torch.device(device).index
        index = torch.cuda.current_device() if given is None else given
        free, _total = torch.cuda.mem_get_info(index)
        return int(free + torch.cuda.memory_reserved(index))
    from staytuned.finetune.memory import current_rss_mb

    available = _meminfo("MemAvailable")
    if available is None:
        return 0
    room = cgroup_memory_room()
    return int((available if room is None else min(available, room)) + current_rss_mb() * 2**20)


def memory_budget_of(device: str, budget: int | float | str | None = None) -> int:
    """``budget`` in bytes (a number of bytes, or a size such as ``"6GB"``), else what is available."""
    if budget is None:
        return available_memory(device)
    if isinstance(budget, str):
        return parse_size(budget, field_name="memory_budget")
    if isinstance(budget, bool) or not isinstance(budget, int | float) or budget <= 0:
        raise InputError("must be a positive number of bytes or a size like 6GB", field="memory_budget",
                         value=budget)
    return int(budget)


# ---------------------------------------------------------------- the decision


def check_checkpointing(value: Any) -> str:
    """``value`` if it is auto, on or off; else InputError (it would fail every trial)."""
    return str(check_execution({"gradient_checkpointing": value})["gradient_checkpointing"])


class DoesNotFit(RuntimeError):
    """The planner says a trial cannot fit in the memory available (the message says what would)."""


@dataclass(frozen=True)
class MemoryFit:
    """What the planner decided for one trial.

    ``fits`` False: ``reason`` says why (the estimate, the memory available, and the nearest
    setting that fits or what would). Else ``micro_batch_size`` and ``gradient_checkpointing``
    are what to run with, ``estimate`` the planned peak in bytes and ``note`` what changed.
    """

    fits: bool
    micro_batch_size: int
    gradient_checkpointing: bool
    estimate: int
    budget: int
    reason: str = ""
    note: str = ""
    plan: MemoryPlan | None = None


def arch_of(model: Any) -> ModelArch | None:
    """The planner's view of a loaded model (its ``config``); None for one it cannot plan."""
    config = getattr(model, "config", None)
    to_dict = getattr(config, "to_dict", None)
    if to_dict is None:
        return None
    try:
        return ModelArch.from_config(to_dict(), name=str(getattr(config, "_name_or_path", "") or ""))
    except InputError:
        return None


def fit_trial(arch: ModelArch, config: Any, *, precision: str, device: str, budget: int, seq_len: int,
              micro_batch: int, micro_fixed: bool, checkpointing: str, logit_positions: int | None = None,
              margin: float = DEFAULT_MARGIN) -> MemoryFit | None:
    """Decide micro-batch and checkpointing for one trial before it trains (see the module doc).

    ``config`` is the trial's TrainConfig (method, LoRA shape, optimizer, batch_size);
    ``precision`` what it runs in (fp32, bf16, fp16); ``seq_len`` the longest example in tokens;
    ``micro_batch`` the user's micro-batch (``micro_fixed``) or the trainer's own choice.
    None when the planner cannot model this trial (an architecture or LoRA target it does not know).
    """
    check_checkpointing(checkpointing)
    kind = "cuda" if str(device).startswith("cuda") else "cpu" if str(device).startswith("cpu") else None
    if kind is None or budget <= 0:
        return None
    dev = Device(kind, int(budget), f"{device} ({budget / GIB:.1f} GiB available)")
    try:
        setting = TrialSetting(
            method=config.method, lora_r=int(config.lora_r), lora_target_modules=config.lora_target_modules,
            lora_dropout=float(config.lora_dropout), optimizer=config.optimizer, precision=precision,
            max_seq_length=max(1, int(seq_len)), micro_batch=max(1, int(micro_batch)),
            gradient_checkpointing=checkpointing == "on",
            logit_positions=min(logit_positions, seq_len) if logit_positions else None)
        setting.targets()
    except InputError:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if micro_fixed and checkpointing == "auto":
            plan = estimate(arch, setting, dev, margin=margin)
            if not plan.fits:
                on = estimate(arch, replace(setting, gradient_checkpointing=True), dev, margin=margin)
                plan = on if on.fits else plan
        elif micro_fixed:
            plan = estimate(arch, setting, dev, margin=margin)
        else:
            fixed = None if checkpointing == "auto" else checkpointing == "on"
            plan = choose(arch, setting, dev, margin=margin, checkpointing=fixed)
    if not plan.fits:
        return MemoryFit(False, setting.micro_batch, setting.gradient_checkpointing, plan.total, budget,
                         reason=refusal(plan), plan=plan)
    chosen = plan.setting
    micro = chosen.micro_batch
    if micro < setting.micro_batch:
        # As many forward passes as the largest fitting micro-batch needs, split evenly.
        micro = math.ceil(config.batch_size / math.ceil(config.batch_size / micro))
    changes = []
    if micro != setting.micro_batch:
        changes.append(f"micro-batch {setting.micro_batch} -> {micro}")
    if chosen.gradient_checkpointing and checkpointing == "auto":
        changes.append("gradient checkpointing on")
    note = (f"{', '.join(changes)} to fit: {plan.total / GIB:.2f} GiB of {plan.usable / GIB:.2f} GiB usable"
            if changes else "")
    return MemoryFit(True, micro, chosen.gradient_checkpointing, plan.total, budget, note=note, plan=plan)


def fit_before_loading(arch: ModelArch, config: Any, *, precision: str, device: str, budget: int,
                       micro_batch: int | None, checkpointing: str,
                       margin: float = DEFAULT_MARGIN) -> MemoryFit | None:
    """The check before a model loads: the trial without activations (one token per example, the
    user's micro-batch or 1): weights, gradients, optimizer states and runtime. When even that does
    not fit, no sequence length or micro-batch will."""
    fit = fit_trial(arch, config, precision=precision, device=device, budget=budget, seq_len=1,
                    micro_batch=micro_batch or 1, micro_fixed=True, checkpointing=checkpointing,
                    logit_positions=1, margin=margin)
    if fit is None or fit.fits or fit.plan is None:
        return fit
    least = fit.plan.total if checkpointing == "off" else min(fit.plan.total, fit.plan.minimum_total or fit.plan.total)
    return replace(fit, reason=refusal(fit.plan, what=(
        f"{_METHOD_NAMES.get(config.method, config.method)} needs {least / GIB:.2f} GiB before any "
        "activations (weights, gradients, optimizer states, runtime)")))


def refusal(plan: MemoryPlan, what: str | None = None) -> str:
    """Why a trial does not fit: the estimate, the memory available, and what would fit."""
    requested = plan.requested
    what = what or f"{requested.describe()} needs {plan.total / GIB:.2f} GiB"
    text = (f"does not fit in memory: {what}, and {plan.device.kind} has "
            f"{plan.device.memory / GIB:.2f} GiB available ({plan.usable / GIB:.2f} GiB usable, "
            f"{plan.margin:.0%} kept free)")
    near = plan.nearest
    if near is not None:
        text += f"; nearest setting that fits: {plan.nearest_change} ({(plan.nearest_total or 0) / GIB:.2f} GiB)"
        if near.method != requested.method:
            text += "; the method is a hyperparameter, so that is another config"
    else:
        text += ("; nothing fits on this device, not even QLoRA with micro-batch 1 and gradient checkpointing"
                 if requested.method != "qlora" else
                 "; nothing fits on this device, not even micro-batch 1 with gradient checkpointing")
        if plan.shard_gpus:
            text += f" (sharded over {plan.shard_gpus} such GPUs it would)"
    return text
