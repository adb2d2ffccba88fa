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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from staytuned.results import ScoreMatrix

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


def family_matrix(n_datasets: int = 20, n_configs: int = 200, *, n_clusters: int = 4,
                  noise: float = 0.01, spread: float = 0.15, seed: int = 0) -> ScoreMatrix:
    """A synthetic results matrix of any size, for benchmarks that vary one factor at a time.

    Configs: ``n_configs`` distinct draws of learning_rate (log-uniform 1e-5..3e-3, 3 significant
    digits), lr_scheduler (3), batch_size (4), epochs (4) and warmup_ratio (3). Datasets fall in
    ``n_clusters`` clusters (round robin); each cluster has its own optimum (learning rate,
    scheduler, batch size, epochs) and each dataset shifts its cluster's optimal learning rate by
    N(0, ``spread``) decades. A score falls off quadratically from the dataset's optimum, plus
    N(0, ``noise``) per cell. ``n_clusters == n_datasets`` means no shared structure beyond the
    shape of the response; 1 means every dataset wants nearly the same config. Built directly
    as a :class:`~staytuned.results.ScoreMatrix` (2,000 x 500 in well under a second).
    """
    import numpy as np

    from staytuned.errors import InputError
    from staytuned.results import ScoreMatrix

    for name, value, low in (("n_datasets", n_datasets, 2), ("n_configs", n_configs, 2),
                             ("n_clusters", n_clusters, 1)):
        if not isinstance(value, int) or value < low:
            raise InputError("bad synthetic table size", field=name, value=value,
                             expected=f"an integer >= {low}")
    if n_clusters > n_datasets:
        raise InputError("more clusters than datasets", field="n_clusters", value=n_clusters,
                         expected=f"<= n_datasets ({n_datasets})")
    if not (noise >= 0 and spread >= 0):
        raise InputError("noise and spread must be >= 0", field="noise", value=(noise, spread))
    rng = np.random.default_rng(seed)
    scheds = ["linear", "cosine", "constant"]
    sizes = np.array([8, 16, 32, 64])
    epochs = np.array([1, 2, 3, 5])
    warmups = np.array([0.0, 0.03, 0.1])
    hps: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    while len(hps) < n_configs:  # distinct configs; 1.6M combinations, so this ends quickly
        lr = float(f"{10 ** rng.uniform(-5, math.log10(3e-3)):.3g}")
        h = {"learning_rate": lr, "lr_scheduler": scheds[rng.integers(3)],
             "batch_size": int(sizes[rng.integers(4)]), "epochs": int(epochs[rng.integers(4)]),
             "warmup_ratio": float(warmups[rng.integers(3)])}
        key = tuple(h.values())
        if key not in seen:
            seen.add(key)
            hps.append(h)
    log_lr = np.log10([h["learning_rate"] for h in hps])
    sched = np.array([scheds.index(h["lr_scheduler"]) for h in hps])
    log_bs = np.log2([h["batch_size"] for h in hps])
    ep = np.array([h["epochs"] for h in hps], dtype=float)
    wu = np.array([h["warmup_ratio"] for h in hps])
    # cluster optima: learning rate (decades), scheduler penalties, batch size, epochs, warmup
    c_lr = rng.uniform(-4.8, -2.7, n_clusters)
    c_sched = rng.uniform(0.0, 0.05, (n_clusters, 3))
    c_sched[np.arange(n_clusters), rng.integers(0, 3, n_clusters)] = 0.0
    c_bs = rng.uniform(3, 6, n_clusters)
    c_ep = rng.uniform(1, 5, n_clusters)
    c_wu = rng.uniform(0, 0.1, n_clusters)
    cluster = np.arange(n_datasets) % n_clusters
    base = rng.uniform(0.5, 0.9, n_datasets)
    shift = rng.normal(0.0, spread, n_datasets)
    cl = cluster[None, :]
    s = (base[None, :]
         - 0.06 * (log_lr[:, None] - c_lr[cl] - shift[None, :]) ** 2
         - c_sched[cl, sched[:, None]]
         - 0.01 * (log_bs[:, None] - c_bs[cl]) ** 2
         - 0.004 * (ep[:, None] - c_ep[cl]) ** 2
         - 0.5 * np.abs(wu[:, None] - c_wu[cl]) ** 2)
    s = s + rng.normal(0.0, noise, s.shape)
    names = [f"cl{cluster[j] + 1}-d{j + 1}" for j in range(n_datasets)]
    return ScoreMatrix.from_dense(np.round(s, 6), datasets=names, hps=hps)
