"""TrainConfig: every training hyperparameter of one trial, validated by the schema.

Names, types, defaults and constraints come from :mod:`staytuned.hparams.schema` (the one
declaration); the dataclass spells the fields out for type checkers and readers, and a test keeps
the two equal. Light module (no torch).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from staytuned.errors import InputError
from staytuned.hparams.schema import (
    DEFAULT_LR,
    EXECUTION_SETTINGS,
    LORA_METHODS,
    TRAIN,
    execution_error,
)

_METHOD = next(p for p in TRAIN if p.name == "method")
LORA_FIELDS = tuple(p.name for p in TRAIN if p.methods == LORA_METHODS)


@dataclass
class TrainConfig:
    """Hyperparameters of one fine-tuning trial.

    - ``method``: "lora" (train a fresh LoRA adapter on the frozen base), "qlora" (the same adapter
      on a base loaded in 4-bit NF4 with bitsandbytes) or "full" (all weights).
    - ``learning_rate``: peak learning rate; ``None`` means 1e-4 for lora and qlora, 1e-5 for full.
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
      comma list such as "q_proj,v_proj"): lora and qlora only; ignored (and not validated) for full.

    How a machine runs the trial (precision, micro-batch, device, threads) is not part of it:
    those are execution settings, passed to ``run_trial`` separately.
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
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str = "all-linear"
    time_decay_k: float = 1.0
    step_size_epochs: float = 1.0
    step_gamma: float = 0.5
    exp_gamma: float = 0.5

    def __post_init__(self) -> None:
        if self.learning_rate is None and self.method in DEFAULT_LR:
            self.learning_rate = DEFAULT_LR[self.method]

    @property
    def peak_lr(self) -> float:
        """``learning_rate`` as a number: the method's default filled in (an unknown method has none)."""
        if self.learning_rate is None:
            raise InputError("no learning rate for this method", field="learning_rate",
                             value=self.method, expected=" or ".join(DEFAULT_LR))
        return float(self.learning_rate)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | TrainConfig | None = None, **overrides: Any) -> TrainConfig:
        """Build and validate a config from a mapping (e.g. sampled HPs); unknown names are errors.

        Values are coerced to the field type (``"1e-4"`` -> 1e-4, ``8.0`` -> 8); ``None`` means default.
        """
        if isinstance(values, TrainConfig):
            values = values.to_dict()
        merged = {**dict(values or {}), **overrides}
        declared = {p.name: p for p in TRAIN}
        for name, value in merged.items():
            if name in EXECUTION_SETTINGS:
                raise execution_error(name)
            if name not in declared:
                raise InputError(
                    "unknown training hyperparameter", field=name, value=value,
                    expected="one of " + ", ".join(declared),
                )
        # LoRA-only values are ignored under full fine-tuning, so they are not checked there.
        method = declared["method"].check(merged.get("method") or "lora")
        kwargs = {k: declared[k].check(v) if method in declared[k].methods else v
                  for k, v in merged.items() if v is not None}
        config = cls(**kwargs)
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def hp_dict(self) -> dict[str, Any]:
        """The HPs that matter for this method (LoRA fields dropped for full fine-tuning)."""
        d = self.to_dict()
        if self.method not in LORA_METHODS:
            for name in LORA_FIELDS:
                d.pop(name)
        return d

    # ------------------------------------------------------------------ validation

    def validate(self) -> TrainConfig:
        """Raise InputError naming the first invalid field; return self when all are valid."""
        _METHOD.check(self.method)
        for p in TRAIN:
            if self.method not in p.methods:
                continue  # e.g. LoRA fields under full fine-tuning: ignored, not validated
            p.check(getattr(self, p.name))
        modules = str(self.lora_target_modules).strip()
        if self.method in LORA_METHODS and (not modules or not all(m.strip() for m in modules.split(","))):
            raise InputError(
                "empty LoRA target module name", field="lora_target_modules",
                value=self.lora_target_modules,
                expected='"all-linear" or a comma list of module names like "q_proj,v_proj"',
            )
        return self
