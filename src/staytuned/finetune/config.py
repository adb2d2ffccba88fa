"""TrainConfig: every training hyperparameter of one trial, with documented names and defaults.

The names are the contract shared with search spaces, storage, results tables and exports
(see docs/CONTRACTS.md). This module is light (no torch).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from staytuned.errors import InputError

METHODS = ("lora", "full")
SCHEDULERS = (
    "linear", "cosine", "constant", "constant_with_warmup", "polynomial",
    "time_based", "step", "exponential",
)
OPTIMIZERS = ("adamw", "sgd", "adafactor")
PRECISIONS = ("auto", "fp32", "bf16")
DEFAULT_LR = {"lora": 1e-4, "full": 1e-5}
LORA_FIELDS = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules")


@dataclass
class TrainConfig:
    """Hyperparameters of one fine-tuning trial.

    - ``method``: "lora" (train a fresh LoRA adapter on the frozen base) or "full" (all weights).
    - ``learning_rate``: peak learning rate; ``None`` means 1e-4 for lora and 1e-5 for full.
    - ``lr_scheduler``: linear, cosine, constant, constant_with_warmup, polynomial (the
      transformers schedules; polynomial decays to 1e-7 with power 1), or the classic decays
      time_based ``lr / (1 + time_decay_k * t)``, step ``lr * step_gamma ** floor(t / step_size_epochs)``
      and exponential ``lr * exp_gamma ** t``, where ``t`` is the number of epochs done
      (optimizer steps / steps per epoch). See :mod:`staytuned.finetune.schedules`.
    - ``warmup_ratio``: fraction of the optimizer steps with linear warmup from 0 (every schedule
      except "constant", which by definition has none).
    - ``weight_decay``: decoupled weight decay on matrices (biases and norm weights get none).
    - ``batch_size``: the EFFECTIVE batch size (examples per optimizer step); split automatically
      into per-device micro-batches x gradient accumulation.
    - ``epochs``: passes over the training data; fractional values stop part-way.
    - ``max_seq_length``: prompt + target tokens per example; longer examples lose the middle of
      the prompt (instructions at its start and the answer cue at its end are kept).
    - ``optimizer``: adamw, sgd (momentum 0.9) or adafactor (fixed learning rate, no relative step).
    - ``seed``: seeds adapter initialisation, data order and dropout.
    - ``lora_r``, ``lora_alpha``, ``lora_dropout``, ``lora_target_modules`` ("all-linear" or a
      comma list such as "q_proj,v_proj"): LoRA only; ignored (and not validated) for full.
    - ``precision``: "auto" (fp32 on CPU, bf16 autocast on GPUs that support it), "fp32", "bf16".
    """

    method: str = "lora"
    learning_rate: float | None = None
    lr_scheduler: str = "linear"
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    batch_size: int = 8
    epochs: float = 3.0
    max_seq_length: int = 512
    optimizer: str = "adamw"
    seed: int = 0
    lora_r: int = 16
    lora_alpha: float = 32
    lora_dropout: float = 0.05
    lora_target_modules: str = "all-linear"
    time_decay_k: float = 1.0
    step_size_epochs: float = 1.0
    step_gamma: float = 0.5
    exp_gamma: float = 0.5
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.learning_rate is None and self.method in DEFAULT_LR:
            self.learning_rate = DEFAULT_LR[self.method]

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | TrainConfig | None = None, **overrides: Any) -> TrainConfig:
        """Build and validate a config from a mapping (e.g. sampled HPs); unknown names are errors.

        Values are coerced to the field type (``"1e-4"`` -> 1e-4, ``8.0`` -> 8); ``None`` means default.
        """
        if isinstance(values, TrainConfig):
            values = values.to_dict()
        merged = {**dict(values or {}), **overrides}
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(merged) - set(known))
        if unknown:
            raise InputError(
                "unknown training hyperparameter", field=unknown[0], value=merged[unknown[0]],
                expected="one of " + ", ".join(known),
            )
        kwargs = {k: _coerce(k, v, known[k].type) for k, v in merged.items() if v is not None}
        config = cls(**kwargs)
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def hp_dict(self) -> dict[str, Any]:
        """The HPs that matter for this method (LoRA fields dropped for full fine-tuning)."""
        d = self.to_dict()
        if self.method != "lora":
            for name in LORA_FIELDS:
                d.pop(name)
        return d

    # ------------------------------------------------------------------ validation

    def validate(self) -> TrainConfig:
        """Raise InputError naming the first invalid field; return self when all are valid."""
        _choice("method", self.method, METHODS)
        _choice("lr_scheduler", self.lr_scheduler, SCHEDULERS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("precision", self.precision, PRECISIONS)
        _number("learning_rate", self.learning_rate, low=0.0, low_open=True)
        _number("warmup_ratio", self.warmup_ratio, low=0.0, high=1.0, high_open=True)
        _number("weight_decay", self.weight_decay, low=0.0)
        _integer("batch_size", self.batch_size, low=1)
        _number("epochs", self.epochs, low=0.0, low_open=True)
        _integer("max_seq_length", self.max_seq_length, low=8)
        _integer("seed", self.seed, low=0)
        _number("time_decay_k", self.time_decay_k, low=0.0)
        _number("step_size_epochs", self.step_size_epochs, low=0.0, low_open=True)
        _number("step_gamma", self.step_gamma, low=0.0, low_open=True)
        _number("exp_gamma", self.exp_gamma, low=0.0, low_open=True)
        if self.method == "lora":
            _integer("lora_r", self.lora_r, low=1)
            _number("lora_alpha", self.lora_alpha, low=0.0, low_open=True)
            _number("lora_dropout", self.lora_dropout, low=0.0, high=1.0, high_open=True)
            modules = str(self.lora_target_modules).strip()
            if not modules or not all(m.strip() for m in modules.split(",")):
                raise InputError(
                    "empty LoRA target module name", field="lora_target_modules",
                    value=self.lora_target_modules,
                    expected='"all-linear" or a comma list of module names like "q_proj,v_proj"',
                )
        return self


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InputError(f"unknown {name}", field=name, value=value, expected=" | ".join(allowed))


def _number(name: str, value: Any, *, low: float | None = None, high: float | None = None,
            low_open: bool = False, high_open: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "" if low is None else ("> " if low_open else ">= ") + f"{low:g}"
        hi = "" if high is None else ("< " if high_open else "<= ") + f"{high:g}"
        raise InputError(f"invalid {name}", field=name, value=value,
                         expected="a finite number " + " and ".join(p for p in (lo, hi) if p))


def _integer(name: str, value: Any, *, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InputError(f"invalid {name}", field=name, value=value, expected=f"an integer >= {low}")


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """Convert strings and integral floats to the field's type; leave the rest for validate()."""
    kind = str(annotation)
    try:
        if kind.startswith("int") and isinstance(value, str | float) and not isinstance(value, bool):
            number = float(value)
            return int(number) if number.is_integer() else number
        if kind.startswith("float") and isinstance(value, str):
            return float(value)
        if kind.startswith("str") and not isinstance(value, str):
            return str(value)
    except ValueError:
        raise InputError(f"invalid {name}", field=name, value=value, expected=f"a {kind.split()[0]}") from None
    return value
