"""Learning-rate schedules, as multipliers of the peak learning rate per optimizer step.

Notation: ``s`` = optimizer steps done before the update (0, 1, ...), ``S`` = total optimizer
steps, ``W = ceil(warmup_ratio * S)`` warmup steps, ``E`` = optimizer steps per epoch and
``t = s / E`` the epochs done. The learning rate of update ``s`` is ``learning_rate * f(s)``:

- warmup (every schedule except ``constant``): ``f(s) = s / W`` for ``s < W``
  (the transformers convention: the first update has learning rate 0 when W > 0);
- ``linear``: ``(S - s) / (S - W)``; ``cosine``: ``0.5 * (1 + cos(pi * (s - W) / (S - W)))``;
  ``constant``: 1 (no warmup); ``constant_with_warmup``: 1 after warmup;
  ``polynomial``: ``(lr_end + (lr - lr_end) * (1 - (s - W) / (S - W))) / lr`` with ``lr_end = 1e-7``
  and power 1 (these five come from :func:`transformers.get_scheduler`);
- ``time_based``: ``1 / (1 + k * t)`` with ``k = time_decay_k``;
- ``step``: ``step_gamma ** floor(t / step_size_epochs)``;
- ``exponential``: ``exp_gamma ** t`` (smooth: decays by ``exp_gamma`` per epoch).

The classic decays count ``t`` from the start of training, so warmup does not shift them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from staytuned.hparams.train import TrainConfig

HF_SCHEDULES = ("linear", "cosine", "constant", "constant_with_warmup", "polynomial")


def warmup_steps(config: TrainConfig, total_steps: int) -> int:
    return math.ceil(config.warmup_ratio * total_steps)


def classic_multiplier(config: TrainConfig, total_steps: int, steps_per_epoch: int) -> Callable[[int], float]:
    """``f(s)`` of the classic decays (time_based, step, exponential), warmup included."""
    warmup = warmup_steps(config, total_steps)
    per_epoch = max(1, steps_per_epoch)
    name = config.lr_scheduler

    def multiplier(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        t = step / per_epoch
        if name == "time_based":
            return 1.0 / (1.0 + config.time_decay_k * t)
        if name == "step":
            return config.step_gamma ** math.floor(t / config.step_size_epochs + 1e-9)
        if name == "exponential":
            return config.exp_gamma ** t
        raise ValueError(f"not a classic schedule: {name}")

    return multiplier


def build_scheduler(optimizer: Any, config: TrainConfig, total_steps: int, steps_per_epoch: int) -> Any:
    """A torch LR scheduler to ``step()`` once after every optimizer step."""
    if config.lr_scheduler in HF_SCHEDULES:
        from transformers import get_scheduler

        warmup = 0 if config.lr_scheduler == "constant" else warmup_steps(config, total_steps)
        return get_scheduler(config.lr_scheduler, optimizer, num_warmup_steps=warmup,
                             num_training_steps=max(1, total_steps))
    from torch.optim.lr_scheduler import LambdaLR

    return LambdaLR(optimizer, classic_multiplier(config, total_steps, steps_per_epoch))


def lr_values(config: TrainConfig, total_steps: int, steps_per_epoch: int) -> list[float]:
    """The learning rate of each of the ``total_steps`` updates (for plots, exports and tests)."""
    import torch

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=config.peak_lr)
    scheduler = build_scheduler(optimizer, config, total_steps, steps_per_epoch)
    values = []
    for _ in range(total_steps):
        values.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return values
