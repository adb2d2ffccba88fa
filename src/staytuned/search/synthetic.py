"""A cheap synthetic trial with the signature of ``staytuned.finetune.run_trial``.

For tests, demos of the search machinery and benchmarks of the runners: the score is a smooth
function of the config (best near learning_rate 3e-4, cosine, lora_r 16), per-epoch scores rise
towards it, and ``learning_rate >= 0.05`` fails like a diverging run would. ``STAYTUNED_SYNTHETIC_SLEEP``
(seconds per epoch) makes trials slow enough to kill mid-study in tests.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

UNTUNED_SCORE = 0.5


def synthetic_score(config: Mapping[str, Any], task: str = "synthetic") -> float:
    lr = float(config.get("learning_rate", 1e-4))
    shift = (sum(map(ord, str(task))) % 5) * 0.1  # tasks differ a little
    score = 0.9 - 0.08 * (math.log10(lr) - (math.log10(3e-4) + shift)) ** 2
    score -= {"cosine": 0.0, "linear": 0.01, "constant": 0.03}.get(str(config.get("lr_scheduler")), 0.02)
    if "lora_r" in config:
        score -= 0.002 * abs(math.log2(int(config["lora_r"])) - 4)
    score -= 0.001 * abs(float(config.get("epochs", 1)) - 3)
    return round(score, 6)


def synthetic_trial(model: str, task: str, config: Mapping[str, Any], *, train_size: int | None = None,
                    eval_size: int | None = None, eval_split: str = "validation", seed: int = 0,
                    on_epoch: Callable[[int, float], bool] | None = None, eval_only: bool = False,
                    **_: Any) -> dict[str, Any]:
    """Result dict in the TrialResult layout (docs/CONTRACTS.md); ``eval_only``: the untuned score
    (0.5, a coin flip: every tuned config beats it)."""
    start = time.perf_counter()
    base = {"metric": "accuracy", "direction": "max", "task": task, "model": model,
            "train_size": train_size, "config": dict(config), "loss_curve": [[1, 2.0], [2, 1.5]],
            "n_train": train_size, "n_eval": eval_size, "train_tokens_per_s": 1000.0,
            "peak_memory_mb": 1.0}
    if eval_only:
        return {**base, "status": "ok", "score": UNTUNED_SCORE, "metrics": {"accuracy": UNTUNED_SCORE},
                "error": None, "epoch_scores": [], "runtime_s": time.perf_counter() - start}
    lr = float(config.get("learning_rate", 1e-4))
    if lr >= 0.05:
        return {**base, "status": "failed", "score": float("nan"), "metrics": {},
                "error": "loss is NaN (diverged)", "epoch_scores": [],
                "runtime_s": time.perf_counter() - start}
    final = synthetic_score(config, task)
    epochs = max(1, int(round(float(config.get("epochs", 1)))))
    scores = []
    sleep = float(os.environ.get("STAYTUNED_SYNTHETIC_SLEEP", "0"))
    for e in range(1, epochs + 1):
        if sleep:
            time.sleep(sleep)
        s = final - 0.05 * (epochs - e)
        scores.append(s)
        if on_epoch is not None and on_epoch(e, s):
            return {**base, "status": "pruned", "score": s, "metrics": {"accuracy": s},
                    "error": None, "epoch_scores": scores, "runtime_s": time.perf_counter() - start}
    return {**base, "status": "ok", "score": final, "metrics": {"accuracy": final}, "error": None,
            "epoch_scores": scores, "runtime_s": time.perf_counter() - start}


def clustered_table(n_clusters: int = 4, per_cluster: int = 5, *, seed: int = 0,
                    noise: float = 0.01) -> list[dict[str, Any]]:
    """A results table (canonical columns) with known structure: datasets in clusters.

    Configs: learning_rate (6 values, log) x lr_scheduler (3) x batch_size (3) = 54. Every cluster
    has its own optimum (learning rate, scheduler, batch size); a dataset's score falls off
    quadratically from its cluster's optimum (plus a small per-dataset shift and noise), so
    datasets of one cluster agree with each other and disagree with the other clusters.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    lrs = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3]
    scheds = ["linear", "cosine", "constant"]
    sizes = [8, 16, 32]
    centers = [(rng.uniform(-5, -2.5), rng.integers(0, 3), rng.uniform(3, 5)) for _ in range(n_clusters)]
    rows = []
    for ci in range(n_clusters):
        mu_lr, best_sched, mu_bs = centers[ci]
        for di in range(per_cluster):
            name = f"cl{ci + 1}-d{di + 1}"
            base = rng.uniform(0.6, 0.9)
            shift = rng.normal(0, 0.15)
            for lr in lrs:
                for si, sched in enumerate(scheds):
                    for bs in sizes:
                        s = base - 0.06 * (math.log10(lr) - mu_lr - shift) ** 2
                        s -= 0.0 if si == best_sched else 0.03
                        s -= 0.01 * (math.log2(bs) - mu_bs) ** 2
                        s += rng.normal(0, noise)
                        rows.append({"dataset": name, "hp_learning_rate": lr, "hp_lr_scheduler": sched,
                                     "hp_batch_size": bs, "metric": "accuracy", "score": round(s, 5),
                                     "status": "ok"})
    return rows
