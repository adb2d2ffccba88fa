"""Learning-rate schedules against hand-computed values (formulas in schedules.py)."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("torch")

from staytuned.finetune.schedules import lr_values
from staytuned.hparams.train import TrainConfig

LR = 0.1


def _cfg(name: str, **kw: float) -> TrainConfig:
    return TrainConfig.from_dict({"lr_scheduler": name, "learning_rate": LR, **kw})


def _close(got: list[float], want: list[float]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g == pytest.approx(w, rel=1e-9, abs=1e-12)


def test_linear_with_warmup() -> None:
    # S=10, W=ceil(0.2*10)=2: 0, 0.5, then (10-s)/8 for s=2..9
    want = [0.0, 0.5] + [(10 - s) / 8 for s in range(2, 10)]
    _close(lr_values(_cfg("linear", warmup_ratio=0.2), 10, 5), [LR * w for w in want])


def test_cosine() -> None:
    want = [0.5 * (1 + math.cos(math.pi * s / 8)) for s in range(8)]
    _close(lr_values(_cfg("cosine"), 8, 4), [LR * w for w in want])


def test_constant_ignores_warmup_and_constant_with_warmup_uses_it() -> None:
    _close(lr_values(_cfg("constant", warmup_ratio=0.5), 4, 2), [LR] * 4)
    _close(lr_values(_cfg("constant_with_warmup", warmup_ratio=0.5), 4, 2), [0.0, LR / 2, LR, LR])


def test_polynomial_power_one_to_lr_end() -> None:
    end = 1e-7
    want = [end + (LR - end) * (1 - s / 5) for s in range(5)]
    _close(lr_values(_cfg("polynomial"), 5, 5), want)


def test_time_based() -> None:
    # 4 steps per epoch, t = s/4: lr / (1 + 2 t)
    want = [LR / (1 + 2 * s / 4) for s in range(8)]
    _close(lr_values(_cfg("time_based", time_decay_k=2.0), 8, 4), want)


def test_step_decay() -> None:
    # halve every 2 epochs, 2 steps per epoch: factor 1 for s<4, 0.5 for 4<=s<8, 0.25 after
    want = [LR] * 4 + [LR * 0.5] * 4 + [LR * 0.25] * 2
    _close(lr_values(_cfg("step", step_size_epochs=2.0, step_gamma=0.5), 10, 2), want)


def test_exponential_decay() -> None:
    want = [LR * 0.9 ** (s / 3) for s in range(9)]
    _close(lr_values(_cfg("exponential", exp_gamma=0.9), 9, 3), want)


def test_classic_decay_with_warmup_counts_epochs_from_the_start() -> None:
    # W = ceil(0.25 * 8) = 2; then lr * 0.5 ** floor(s / 2) with 2 steps per epoch
    want = [0.0, LR / 2, LR * 0.5, LR * 0.5, LR * 0.25, LR * 0.25, LR * 0.125, LR * 0.125]
    _close(lr_values(_cfg("step", warmup_ratio=0.25), 8, 2), want)
