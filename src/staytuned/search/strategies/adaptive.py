"""``cbs-adaptive``: a sequential, data-driven Coverage-based Search.

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

:func:`next_config` (numpy only) is the rule; :class:`CBSAdaptiveSampler` runs it as an Optuna
sampler for ``tune``, and :mod:`staytuned.search.simulate` replays it on a results table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from staytuned.errors import InputError
from staytuned.search.strategies.base import Strategy, close
from staytuned.search.strategies.planning import PLAN_ATTR, DistinctSampler

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler
    from optuna.study import Study
    from optuna.trial import FrozenTrial

    from staytuned.results import ScoreMatrix
    from staytuned.search.space import SearchSpace


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
    out: np.ndarray = w / w.sum() * m
    return out


def next_config(norm: np.ndarray, tried: Sequence[int], observed: Sequence[float],
                candidates: Sequence[int] | None = None,
                settings: AdaptiveSettings = AdaptiveSettings(),
                covers: np.ndarray | None = None) -> int:
    """Row index of the next config to try (among ``candidates``, default all untried rows).

    ``covers``: bool configs x datasets (``staytuned.cbs.covers(matrix, tol)``, CBS's definition);
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
        covered = np.asarray(covers[t_idx].any(axis=0))
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


def adaptive_order(norm: np.ndarray, lookup: Sequence[float] | np.ndarray, k: int,
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


# ------------------------------------------------------------------------------------------
# The strategy and its Optuna sampler


class CBSAdaptive(Strategy):
    name = "cbs-adaptive"
    needs = "scores"
    distinct = ("each config is planned under the storage lock, running ones counting as tried; "
                "once every candidate is tried, as tpe")

    @property
    def settings(self) -> AdaptiveSettings:
        return self.adaptive or AdaptiveSettings()

    def sampler(self, *, storage_url: str | None = None) -> CBSAdaptiveSampler:
        import optuna

        matrix = self._offline(scores=True).matrix
        assert matrix is not None  # _offline(scores=True) checked it
        fallback = optuna.samplers.TPESampler(seed=self.seed, n_startup_trials=1,
                                              constant_liar=True)
        return CBSAdaptiveSampler(self.space, matrix, context=self.context, fallback=fallback,
                                  settings=self.settings, lock_url=storage_url, seed=self.seed)


class CBSAdaptiveSampler(DistinctSampler):
    """Optuna sampler: chooses whole configs with :func:`next_config`.

    The candidates are the offline table's configs that fit the space. The plan of a trial is
    decided in ``before_trial`` and stored as a system attr, so concurrent workers treat a running
    trial's config as taken. When every candidate has been tried, ``fallback`` (TPE) takes over,
    behind :class:`DistinctSampler`'s guard.
    """

    def __init__(self, space: SearchSpace, matrix: ScoreMatrix, *,
                 context: Mapping[str, Any] | None = None, fallback: BaseSampler | None = None,
                 settings: AdaptiveSettings = AdaptiveSettings(),
                 lock_url: str | None = None, seed: int | None = None) -> None:
        import optuna

        from staytuned.cbs import covers, normalize

        # relative=False: the fallback samples each param on its own, as it always has
        super().__init__(fallback or optuna.samplers.TPESampler(n_startup_trials=1), space,
                         context=context, seed=seed, lock_url=lock_url, relative=False)
        self._settings = settings
        rows, params = [], []
        for i, hps in enumerate(matrix.hps):
            fit = space.params_of(hps, context)
            if fit and fit not in params:
                rows.append(i)
                params.append(fit)
        if not rows:
            raise InputError("no config of the offline table fits the search space",
                             field="cbs_table", expected="a table whose hp_* values lie in the space")
        self._rows = rows  # the offline table's rows of the candidates
        self._norm = np.asarray(normalize(matrix))[rows]
        self._covers = np.asarray(covers(matrix, settings.tol))[rows]
        self._params = params

    @property
    def settings(self) -> AdaptiveSettings:
        return self._settings

    def _plan(self, study: Study, trial: FrozenTrial) -> dict[str, Any] | None:
        from optuna.trial import TrialState

        tried, observed = [], []
        sign = 1.0 if study.direction.name == "MAXIMIZE" else -1.0
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING,
                                                          TrialState.PRUNED, TrialState.FAIL,
                                                          TrialState.WAITING)):
            if t.number == trial.number:
                continue
            params = {**t.system_attrs.get("fixed_params", {}),
                      **(t.system_attrs.get(PLAN_ATTR) or {}), **t.params}
            row = self._row_of(params)
            if row is None:
                continue
            tried.append(row)
            value = t.value if t.state == TrialState.COMPLETE else None
            # running/failed configs count as tried; their score is unknown (worst for failures)
            observed.append(sign * value if value is not None else (-np.inf if t.state == TrialState.FAIL
                                                                    else np.nan))
        untried = [i for i in range(len(self._params)) if i not in set(tried)]
        if not untried:
            return super()._plan(study, trial)  # every candidate tried: the fallback (TPE)
        obs = np.array(observed, dtype=float)
        finite = np.isfinite(obs)
        if (~finite).any() and finite.any():  # failures rank below every success
            obs = np.where(np.isneginf(obs), np.nanmin(np.where(finite, obs, np.nan)) - 1.0, obs)
        return self._params[self._choose(tried, obs.tolist(), untried)]

    def _choose(self, tried: list[int], observed: list[float], untried: list[int]) -> int:
        """The candidate row to plan next (``transfer`` overrides this rule)."""
        return next_config(self._norm, tried, observed, untried, self._settings, self._covers)

    def _row_of(self, params: Mapping[str, Any]) -> int | None:
        for i, cand in enumerate(self._params):
            if all(k in params and close(params[k], v) for k, v in cand.items()):
                return i
        return None
