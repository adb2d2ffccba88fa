"""``transfer``: offline datasets as an ensemble of surrogates, reweighted by the new task's results.

Each offline dataset is a "surrogate" of the new task: its normalized scores of the candidate
configs (RGPE, Feurer et al. 2018, with tables instead of GPs). Two phases:

1. **portfolio** (fewer than ``calibrate_from`` distinct observed scores): pick the config with
   the largest weighted portfolio gain ``sum_d w_d max(u[c, d] - b_d, 0)`` (``u``: the utility,
   1 - the config's scaled rank on d as in the zero-shot rank portfolio; ``b_d``: its best
   value among the tried configs) plus, from the second pick on, ``coverage`` x the weighted
   share of datasets it newly covers (CBS's within-1% rule). With uniform weights the first
   pick is the zero-shot portfolio's; the weights come from how well each dataset ranks the
   observed pairs (softmax of Kendall's tau, as ``cbs-adaptive``). Why ranks: of the static
   rankings, the rank portfolio is the most robust first picks across our tables
   (bench/results/simulate.json); why coverage: it steers the second pick to datasets whose
   optimum no tried config reaches.
2. **calibrated expected improvement**: each dataset's scores, Gaussian-copula transformed
   (Salinas et al. 2020: per-dataset quantiles mapped through the normal inverse CDF), are fit
   to the new task's observed scores by a non-negative affine map (least squares); the fit's
   residual variance makes it a Gaussian predictive per config. A dataset's weight mixes its
   ranking agreement with its fit's likelihood; the next config maximizes the weighted
   expected improvement over the best observed score, in the new task's own units.

Running trials count as tried (their offline scores enter ``b_d``) but carry no score; failed
trials score below every success. Why the split: one or two observations say nothing about
scale, so the first picks must cover the datasets; from two distinct scores on, the fit tells
which datasets (and what scale) explain the task. Cost per proposal: a few passes over the
configs x datasets matrix (``bench/bench_simulate.py --cost``).

:class:`TransferRule` (numpy only) is the rule; :class:`TransferSampler` runs it in ``tune``
(behind :class:`~staytuned.search.strategies.planning.DistinctSampler`'s lock, so configs stay
distinct across workers and processes); :mod:`staytuned.search.simulate` replays it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from staytuned.errors import InputError
from staytuned.search.strategies.adaptive import CBSAdaptive, CBSAdaptiveSampler

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler

    from staytuned.results import ScoreMatrix
    from staytuned.search.space import SearchSpace


@dataclass(frozen=True)
class TransferSettings:
    """Knobs of ``transfer`` (defaults measured in ``bench/bench_simulate.py``)."""

    beta: float = 4.0  # sharpness of the ranking-agreement weights (softmax over Kendall's tau)
    mix: float = 0.5  # calibrated phase: weight of ranking agreement vs the fit's likelihood
    calibrate_from: int = 2  # distinct observed scores before the calibrated phase
    noise_floor: float = 0.02  # residual sd floor, relative to the observed scores' sd
    coverage: float = 0.2  # portfolio phase: weight of the newly covered share of datasets
    tol: float = 0.01  # coverage tolerance (CBS's), relative to a dataset's best score

    def __post_init__(self) -> None:
        checks = (("beta", self.beta >= 0), ("mix", 0 <= self.mix <= 1),
                  ("calibrate_from", isinstance(self.calibrate_from, int) and self.calibrate_from >= 2),
                  ("noise_floor", self.noise_floor > 0), ("coverage", self.coverage >= 0),
                  ("tol", 0 <= self.tol < 1))
        for name, ok in checks:
            if not ok:
                raise InputError("bad transfer setting", field=name, value=getattr(self, name),
                                 expected="beta >= 0, 0 <= mix <= 1, calibrate_from >= 2, "
                                          "noise_floor > 0, coverage >= 0, 0 <= tol < 1")


class TransferRule:
    """The rule over a fixed offline matrix; the per-matrix work is done once, here.

    ``norm``: configs x datasets normalized scores (1 = best, 0 = worst or failed, NaN = missing),
    ``staytuned.cbs.normalize`` of the offline table; ``covers``: bool configs x datasets
    (``staytuned.cbs.covers(matrix, tol)``, CBS's definition; default: normalized score within
    ``settings.tol`` of 1); ``utility``: the portfolio phase's values per cell, higher = better
    (:func:`rank_utility`; default: ``norm``, missing = 0).
    """

    def __init__(self, norm: np.ndarray, settings: TransferSettings = TransferSettings(),
                 covers: np.ndarray | None = None, utility: np.ndarray | None = None) -> None:
        norm = np.asarray(norm, dtype=float)
        if norm.ndim != 2 or norm.shape[0] < 1 or norm.shape[1] < 1:
            raise InputError("the offline matrix must be configs x datasets", field="norm",
                             value=norm.shape, expected="a 2-D array with at least one cell")
        self.settings = settings
        self.norm = norm
        self.filled = np.where(np.isnan(norm), 0.0, norm)  # missing = the worst, as CBS
        self.covers: np.ndarray = np.asarray(
            self.filled >= 1.0 - settings.tol - 1e-12 if covers is None else covers, dtype=bool)
        self.utility: np.ndarray = self.filled if utility is None else \
            np.where(np.isnan(utility), 0.0, np.asarray(utility, dtype=float))
        for name, arr in (("covers", self.covers), ("utility", self.utility)):
            if arr.shape != norm.shape:
                raise InputError(f"{name} must have the shape of norm", field=name,
                                 value=arr.shape, expected=str(norm.shape))
        self.copula = _gaussian_copula(norm)

    @property
    def n_configs(self) -> int:
        return int(self.norm.shape[0])

    def weights(self, tried: Sequence[int], observed: Sequence[float]) -> np.ndarray:
        """Ranking-agreement weight per dataset (sums to 1; uniform before two observations)."""
        idx, y = _finite(tried, observed)
        m = self.norm.shape[1]
        if len(idx) < 2:
            return np.full(m, 1.0 / m)
        tau = _kendall(self.filled[idx], y)
        w = np.exp(self.settings.beta * (tau - tau.max()))
        out: np.ndarray = w / w.sum()
        return out

    def next_config(self, tried: Sequence[int], observed: Sequence[float],
                    candidates: Sequence[int] | None = None) -> int:
        """Row index of the next config (among ``candidates``, default every untried row).

        ``observed[i]``: the new task's score of ``tried[i]`` (higher is better); NaN = not
        known yet (running), -inf = failed.
        """
        n = self.n_configs
        tried_set = {int(t) for t in tried}
        pool = range(n) if candidates is None else candidates
        cand = np.array([int(c) for c in pool if int(c) not in tried_set], dtype=int)
        if cand.size == 0:
            raise ValueError("no untried candidate left")
        if cand.min() < 0 or cand.max() >= n:
            raise InputError("candidate row out of range", field="candidates",
                             value=int(cand.max()), expected=f"0 <= row < {n}")
        score, mean = self._acquisition(list(tried), list(observed), cand)
        order = np.lexsort((cand, -mean, -score))  # acquisition, then mean, then lowest row
        return int(cand[order[0]])

    def order(self, lookup: Sequence[float] | np.ndarray, k: int,
              candidates: Sequence[int] | None = None) -> list[int]:
        """Replay: the first ``k`` picks when the new task's score of row i is ``lookup[i]``."""
        tried: list[int] = []
        obs: list[float] = []
        pool = list(range(self.n_configs) if candidates is None else candidates)
        for _ in range(min(k, len(pool))):
            c = self.next_config(tried, obs, pool)
            tried.append(c)
            obs.append(float(lookup[c]))
        return tried

    # -- the two phases ---------------------------------------------------------------------
    def _acquisition(self, tried: list[int], observed: list[float],
                     cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx, y = _finite(tried, observed)
        w_rank = self.weights(tried, observed)
        if len(np.unique(y)) < self.settings.calibrate_from:
            u = self.utility[cand]
            if not tried:  # the first pick: the utility's portfolio's (zero-shot's by default)
                mean: np.ndarray = u @ w_rank
                return mean, mean
            best = self.utility[tried].max(axis=0)
            covered = np.asarray(self.covers[tried].any(axis=0), dtype=bool)
            gain: np.ndarray = np.maximum(u - best[None, :], 0.0) @ w_rank
            gain = gain + self.settings.coverage * ((self.covers[cand] & ~covered[None, :]) @ w_rank)
            return gain, u @ w_rank
        x = self.copula[idx]  # observed x datasets
        xc = x - x.mean(axis=0)
        yc = y - y.mean()
        sxx = (xc ** 2).sum(axis=0)
        slope = np.where(sxx > 1e-12, np.maximum((xc * yc[:, None]).sum(axis=0), 0.0)
                         / np.maximum(sxx, 1e-12), 0.0)  # a dataset that ranks backwards: flat
        icept = y.mean() - slope * x.mean(axis=0)
        resid = y[:, None] - (icept + slope * x)
        var = (resid ** 2).mean(axis=0) + (self.settings.noise_floor * y.std()) ** 2
        loglik = -0.5 * len(y) * np.log(var)
        w_fit = np.exp(loglik - loglik.max())
        w = self.settings.mix * w_rank + (1 - self.settings.mix) * w_fit / w_fit.sum()
        pred = icept[None, :] + slope[None, :] * self.copula[cand]  # candidates x datasets
        sd = np.sqrt(var)[None, :]
        z = (pred - y.max()) / sd
        ei = (pred - y.max()) * _norm_cdf(z) + sd * _norm_pdf(z)
        return ei @ w, pred @ w


def rank_utility(matrix: ScoreMatrix) -> np.ndarray:
    """1 - per-dataset scaled rank (1 = best, 0 = worst; missing = 0): the zero-shot rank
    portfolio's values (:func:`staytuned.cbs.portfolios.scaled_ranks`)."""
    from staytuned.cbs.portfolios import scaled_ranks

    out: np.ndarray = 1.0 - np.nan_to_num(scaled_ranks(matrix), nan=1.0)
    return out


# ------------------------------------------------------------------------------------------
# numpy helpers (no scipy: strategies import numpy only)


def _finite(tried: Sequence[int], observed: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The tried rows with a known score, failures (-inf) placed below every success."""
    y = np.asarray(observed, dtype=float)
    idx = np.asarray(tried, dtype=int)[: len(y)]
    known = ~np.isnan(y)
    idx, y = idx[known], y[known]
    fin = np.isfinite(y)
    if (~fin).any():
        low = float(y[fin].min() - max(float(np.ptp(y[fin])), 1.0)) if fin.any() else 0.0
        y = np.where(fin, y, low)
    return idx, y


def _kendall(sub: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-a between ``y`` and each column of ``sub`` (observed x datasets)."""
    iu = np.triu_indices(len(y), 1)
    dy = np.sign(y[:, None] - y[None, :])[iu]
    ds = np.sign(sub[:, None, :] - sub[None, :, :])[iu]  # pairs x datasets
    out: np.ndarray = (ds * dy[:, None]).sum(axis=0) / max(len(dy), 1)
    return out


def _gaussian_copula(norm: np.ndarray) -> np.ndarray:
    """Per dataset: average rank (missing = worst) -> quantile (r - 0.5) / n -> normal quantile."""
    n, m = norm.shape
    filled = np.where(np.isnan(norm), -1.0, norm)
    out = np.empty((n, m))
    for j in range(m):
        col = filled[:, j]
        s = np.sort(col)
        rank = (np.searchsorted(s, col, "left") + np.searchsorted(s, col, "right") + 1) / 2.0
        out[:, j] = _norm_ppf((rank - 0.5) / n)
    return out


def _norm_pdf(z: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return out


def _norm_cdf(z: np.ndarray) -> np.ndarray:
    """Standard normal CDF (Abramowitz & Stegun 7.1.26 erf, |error| < 1.5e-7)."""
    x = np.abs(z) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027
                                                                           + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-x * x)
    out: np.ndarray = 0.5 * (1.0 + np.sign(z) * erf)
    return out


def _norm_ppf(p: np.ndarray) -> np.ndarray:
    """Standard normal quantile for 0 < p < 1 (Acklam's rational approximation, ~1e-9)."""
    a = (-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
         1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00)
    b = (-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
         6.680131188771972e+01, -1.328068155288572e+01)
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
         -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00)
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
         3.754408661907416e+00)
    p = np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12)
    out = np.empty_like(p)
    lo, hi = p < 0.02425, p > 1 - 0.02425
    mid = ~(lo | hi)
    q = p[mid] - 0.5
    r = q * q
    out[mid] = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / \
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
    for mask, sign, pp in ((lo, 1.0, p[lo]), (hi, -1.0, 1 - p[hi])):
        s = np.sqrt(-2 * np.log(pp))
        out[mask] = sign * (((((c[0] * s + c[1]) * s + c[2]) * s + c[3]) * s + c[4]) * s + c[5]) / \
            ((((d[0] * s + d[1]) * s + d[2]) * s + d[3]) * s + 1)
    return out


# ------------------------------------------------------------------------------------------
# The strategy and its Optuna sampler


class Transfer(CBSAdaptive):
    """``transfer``: see the module docstring. Same offline source and worker rules as
    ``cbs-adaptive`` (a results table with per-dataset scores)."""

    name = "transfer"

    @property
    def transfer_settings(self) -> TransferSettings:
        """The defaults, with the coverage tolerance of ``simulate --tol`` / AdaptiveSettings."""
        return TransferSettings(tol=self.settings.tol)

    def rule(self) -> TransferRule:
        """The rule over this strategy's whole offline matrix (``simulate`` replays it)."""
        from staytuned.cbs import covers, normalize

        matrix = self._offline(scores=True).matrix
        assert matrix is not None  # _offline(scores=True) checked it
        settings = self.transfer_settings
        return TransferRule(np.asarray(normalize(matrix)), settings,
                            np.asarray(covers(matrix, settings.tol)), rank_utility(matrix))

    def sampler(self, *, storage_url: str | None = None) -> TransferSampler:
        import optuna

        matrix = self._offline(scores=True).matrix
        assert matrix is not None
        fallback = optuna.samplers.TPESampler(seed=self.seed, n_startup_trials=1,
                                              constant_liar=True)
        return TransferSampler(self.space, matrix, context=self.context, fallback=fallback,
                               transfer=self.transfer_settings, lock_url=storage_url,
                               seed=self.seed)


class TransferSampler(CBSAdaptiveSampler):
    """Optuna sampler: whole configs chosen by :class:`TransferRule` under the storage lock
    (running trials count as tried); TPE once every candidate config has been tried."""

    def __init__(self, space: SearchSpace, matrix: ScoreMatrix, *,
                 context: Mapping[str, Any] | None = None, fallback: BaseSampler | None = None,
                 transfer: TransferSettings = TransferSettings(),
                 lock_url: str | None = None, seed: int | None = None) -> None:
        from staytuned.search.strategies.adaptive import AdaptiveSettings

        super().__init__(space, matrix, context=context, fallback=fallback, lock_url=lock_url,
                         seed=seed, settings=AdaptiveSettings(tol=transfer.tol))
        self._rule = TransferRule(self._norm, transfer, self._covers,
                                  rank_utility(matrix)[self._rows])

    def _choose(self, tried: list[int], observed: list[float], untried: list[int]) -> int:
        return self._rule.next_config(tried, observed, untried)
