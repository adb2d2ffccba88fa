"""cbs-adaptive: a sequential, data-driven Coverage-based Search (numpy only).

Static CBS orders configs once, by how many offline datasets each newly covers. On a new task
we observe scores as we go, and some offline datasets clearly behave like the new task while
others do not. After each observation:

1. **weight the offline datasets** by agreement with what we observed: for every dataset, the
   pairwise order agreement (Kendall's tau-a, ties count zero) between the observed scores of the
   tried configs and the dataset's scores of the same configs, plus a bonus when the dataset's best
   tried config is also the best observed one. ``w_d = exp(beta * agreement_d)`` (uniform before
   two observations, so the first pick is static CBS's);
2. **pick the untried config with the most weighted coverage** among datasets not yet covered
   by the tried configs (covered = within ``tol`` of the dataset's best), breaking ties by the
   weighted expected improvement over the tried configs and then by the weighted mean normalized
   score. Once every weighted dataset is covered, the coverage term is zero and the choice falls
   to weighted expected improvement: we exploit the datasets that look like the new task.

The same function serves the Optuna sampler (:mod:`staytuned.search.strategies`) and the
black-box replay in :mod:`staytuned.search.simulate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AdaptiveSettings:
    """Knobs of cbs-adaptive (defaults chosen on synthetic clustered tables, see the README)."""

    tol: float = 0.01  # coverage tolerance, relative to the dataset's best normalized score
    beta: float = 4.0  # sharpness of the dataset weights
    best_bonus: float = 0.5  # agreement bonus when a dataset's best tried config is ours too


def dataset_weights(norm: np.ndarray, tried: Sequence[int], observed: Sequence[float],
                    settings: AdaptiveSettings = AdaptiveSettings()) -> np.ndarray:
    """Weight per offline dataset (columns of ``norm``) from the observations so far.

    ``norm``: configs x datasets normalized scores (1 = best, NaN = missing); ``tried``: row
    indices tried on the new task; ``observed``: their scores there (higher is better).
    """
    m = norm.shape[1]
    y = np.asarray(observed, dtype=float)
    idx = np.asarray(tried, dtype=int)
    ok = np.isfinite(y)
    idx, y = idx[ok], y[ok]
    if len(idx) < 2:
        return np.ones(m)
    sub = norm[idx]  # tried x datasets
    # Kendall tau-a over observed pairs, computed for every dataset at once.
    dy = np.sign(y[:, None] - y[None, :])  # t x t
    ds = np.sign(sub[:, None, :] - sub[None, :, :])  # t x t x m (NaN where missing)
    valid = ~np.isnan(ds)
    pairs = np.triu(np.ones((len(y), len(y)), bool), 1)
    concord = np.where(valid, ds * dy[:, :, None], 0.0)[pairs]  # n_pairs x m
    n_valid = valid[pairs].sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = np.where(n_valid > 0, concord.sum(axis=0) / np.maximum(n_valid, 1), 0.0)
    best_obs = int(np.argmax(y))
    filled = np.where(np.isnan(sub), -np.inf, sub)
    same_best = (filled.argmax(axis=0) == best_obs) & np.isfinite(filled.max(axis=0))
    agreement = tau + settings.best_bonus * same_best
    w = np.exp(settings.beta * (agreement - agreement.max()))
    return w / w.sum() * m


def next_config(norm: np.ndarray, tried: Sequence[int], observed: Sequence[float],
                candidates: Sequence[int] | None = None,
                settings: AdaptiveSettings = AdaptiveSettings(),
                covers: np.ndarray | None = None) -> int:
    """Row index of the next config to try (among ``candidates``, default all untried rows).

    ``covers``: bool configs x datasets (``ScoreMatrix.covers(tol)``, CBS's definition);
    default: normalized score within ``settings.tol`` of 1.
    """
    n, m = norm.shape
    tried_set = set(int(t) for t in tried)
    cand = [int(c) for c in (range(n) if candidates is None else candidates) if int(c) not in tried_set]
    if not cand:
        raise ValueError("no untried candidate left")
    w = dataset_weights(norm, tried, observed, settings)
    filled = np.where(np.isnan(norm), 0.0, norm)
    if covers is None:
        covers = filled >= (1.0 - settings.tol) - 1e-12
    if tried_set:
        t_idx = sorted(tried_set)
        covered = covers[t_idx].any(axis=0)
        best_tried = filled[t_idx].max(axis=0)
    else:
        covered = np.zeros(m, bool)
        best_tried = np.zeros(m)
    c = np.asarray(cand)
    gain = (covers[c] & ~covered[None, :]).astype(float) @ w
    improve = np.maximum(filled[c] - best_tried[None, :], 0.0) @ w
    mean = filled[c] @ w
    # lexicographic: coverage gain, then expected improvement, then mean, then lowest index
    order = np.lexsort((c, -mean, -improve, -gain))
    return int(c[order[0]])


def adaptive_order(norm: np.ndarray, lookup: Sequence[float], k: int,
                   candidates: Sequence[int] | None = None,
                   settings: AdaptiveSettings = AdaptiveSettings(),
                   covers: np.ndarray | None = None) -> list[int]:
    """Replay: the first ``k`` picks when the new task's score of row i is ``lookup[i]``."""
    tried: list[int] = []
    obs: list[float] = []
    pool = list(range(norm.shape[0]) if candidates is None else candidates)
    for _ in range(min(k, len(pool))):
        c = next_config(norm, tried, obs, pool, settings, covers)
        tried.append(c)
        obs.append(float(lookup[c]))
    return tried
