"""Tool-independent translation of a staytuned config: batch split and schedule mapping.

The exporters for each tool share these two decisions, so they live apart from the writers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from staytuned.errors import InputError
from staytuned.hparams.schema import train_defaults
from staytuned.hparams.train import TrainConfig

# Every hyperparameter's default, from the one declaration. Exports fill in whatever a
# recommendation or a study left unset with these, so every file is complete.
DEFAULTS: dict[str, Any] = {k: v for k, v in train_defaults().items() if k != "learning_rate"}

#: Schedules every target understands under the same name (all follow HF ``SchedulerType``).
NATIVE_SCHEDULES = ("linear", "cosine", "constant", "constant_with_warmup", "polynomial")
#: staytuned's epoch-based decays, which no target has: they become ``polynomial`` decays.
DECAY_SCHEDULES = ("time_based", "step", "exponential")
OPTIMIZERS = {"adamw": "adamw_torch", "sgd": "sgd", "adafactor": "adafactor"}

DEFAULT_MICRO_BATCH = 8  # fits a 7B LoRA run at 512 tokens on a 24 GB GPU; lower it with --micro-batch


@dataclass(frozen=True)
class BatchSplit:
    """Effective batch = micro_batch x grad_accum x devices."""

    effective: int
    micro_batch: int
    grad_accum: int
    devices: int = 1


@dataclass(frozen=True)
class ScheduleMapping:
    """A staytuned schedule in a tool's vocabulary (HF ``lr_scheduler_type`` names)."""

    source: str
    name: str
    kwargs: dict[str, float] = field(default_factory=dict)
    exact: bool = True
    warning: str | None = None


def resolve_config(config: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults and validate the HPs an export needs; raise InputError naming the field.

    Validation is TrainConfig's (the schema's), so an export accepts exactly what a trial does.
    """
    return TrainConfig.from_dict({k: v for k, v in config.items() if v is not None}).to_dict()


def split_batch(effective: int, micro_batch: int | None = None, devices: int = 1) -> BatchSplit:
    """Split an effective batch size into per-device micro-batch x gradient accumulation.

    With ``micro_batch`` unset, take the largest divisor of the per-device share that is at most
    ``DEFAULT_MICRO_BATCH`` (fewest accumulation steps that still fit memory). An explicit
    ``micro_batch`` must divide the share exactly, since rounding would change the effective batch
    the score was measured with.
    """
    if devices < 1:
        raise InputError("must be at least 1", field="devices", value=devices)
    if effective % devices:
        raise InputError(
            f"effective batch size {effective} cannot be split evenly over {devices} devices",
            field="devices", value=devices, expected=f"a divisor of {effective}",
        )
    share = effective // devices
    divisors = [d for d in range(1, share + 1) if share % d == 0]
    if micro_batch is None:
        micro = max(d for d in divisors if d <= DEFAULT_MICRO_BATCH)
    else:
        if micro_batch < 1 or share % micro_batch:
            raise InputError(
                f"micro-batch must divide the per-device batch {share} (effective {effective})",
                field="micro_batch", value=micro_batch, expected="one of " + ", ".join(map(str, divisors)),
            )
        micro = micro_batch
    return BatchSplit(effective=effective, micro_batch=micro, grad_accum=share // micro, devices=devices)


def lr_factor(hp: dict[str, Any], epoch: float) -> float:
    """LR multiplier of staytuned's epoch-based decays at ``epoch`` (after warmup; CONTRACTS formulas)."""
    name = hp["lr_scheduler"]
    if name == "time_based":
        return 1.0 / (1.0 + float(hp["time_decay_k"]) * epoch)
    if name == "step":
        return float(hp["step_gamma"]) ** math.floor(epoch / float(hp["step_size_epochs"]))
    if name == "exponential":
        return float(hp["exp_gamma"]) ** epoch
    raise ValueError(name)


def map_schedule(hp: dict[str, Any], *, strict: bool = False) -> ScheduleMapping:
    """Map ``hp['lr_scheduler']`` to an HF scheduler name (+ ``lr_scheduler_kwargs``).

    The five HF-native names map to themselves. ``time_based``, ``step`` and ``exponential`` have
    no equivalent in axolotl, LLaMA-Factory, TRL or HF TrainingArguments; they become HF's
    ``polynomial`` decay with the same final LR (``lr_end``) and the same mean LR over training
    (``power``), the closest monotone curve those tools offer. The mapping is approximate, so it
    carries a warning; with ``strict`` it raises InputError instead.
    """
    name = hp["lr_scheduler"]
    if name in NATIVE_SCHEDULES:
        return ScheduleMapping(source=name, name=name)
    if strict:
        raise InputError(
            "schedule has no exact equivalent in the target tool (without `strict`, the nearest "
            "polynomial decay is exported)", field="lr_scheduler", value=name,
            expected=", ".join(NATIVE_SCHEDULES),
        )
    epochs = float(hp["epochs"])
    if epochs <= 0:
        raise InputError("must be positive", field="epochs", value=epochs)
    n = 2000  # midpoint rule; exact enough for a 3-significant-digit power
    mean = sum(lr_factor(hp, (i + 0.5) * epochs / n) for i in range(n)) / n
    end = lr_factor(hp, epochs * (1 - 0.5 / n))  # LR of the last step actually taken
    lr = float(hp["learning_rate"])
    if end >= 1.0 - 1e-9 or mean - end <= 1e-12:
        return ScheduleMapping(
            source=name, name="constant", exact=False,
            warning=f"lr_scheduler {name!r} does not decay with these settings; exported as 'constant'",
        )
    power = (1.0 - end) / (mean - end) - 1.0
    kwargs = {"lr_end": float(f"{lr * end:.4g}"), "power": float(f"{power:.3g}")}
    return ScheduleMapping(
        source=name, name="polynomial", kwargs=kwargs, exact=False,
        warning=(
            f"lr_scheduler {name!r} has no equivalent in this tool; exported as 'polynomial' "
            f"decay with lr_end={kwargs['lr_end']:g} (same final LR) and power={kwargs['power']:g} "
            f"(same mean LR: {mean:.3f} x learning_rate)"
        ),
    )


def target_modules(hp: dict[str, Any]) -> str | list[str]:
    """'all-linear' stays a string; a comma list becomes a list of module names."""
    value = hp["lora_target_modules"]
    if isinstance(value, list | tuple):
        return [str(v).strip() for v in value if str(v).strip()]
    text = str(value).strip()
    if text in ("all-linear", "all"):
        return "all-linear"
    modules = [part.strip() for part in text.split(",") if part.strip()]
    if not modules:
        raise InputError("empty module list", field="lora_target_modules", value=value,
                         expected="'all-linear' or a comma list such as 'q_proj,v_proj'")
    return modules
