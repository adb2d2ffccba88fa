"""Replay search strategies on a results table used as a black box (leave one dataset out).

For each held-out dataset: the candidate configs are those with a result on it; the objective
looks up the held-out dataset's *choose* score of the proposed config (e.g. its -Dev score); the
offline knowledge of the CBS strategies (ranking, score matrix) comes from the other datasets
only. After k trials the held-out dataset gets the best *score*-matrix normalized value among the
tried configs (e.g. -Test; 1.0 = its best) and counts as solved when one of them is within the
tolerance of its best -- the same definitions as ``staytuned cbs evaluate``, so the ``cbs``
curve here equals the CBS curve there.

random / tpe / gp run on Optuna (in-memory studies, ask-and-tell) over a search space built from
the table's HP values: numeric HPs with 3+ values are ranges (log scale when they span 10x or
more), the others categorical. A proposal is snapped to the nearest untried config of the held-out
dataset (so every trial is a distinct real config: a fair budget for every strategy), and the
trial the sampler learns from carries the snapped config and its score.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from staytuned.errors import InputError
from staytuned.search.adaptive import AdaptiveSettings, adaptive_order
from staytuned.search.strategies import STRATEGIES, startup_trials

DETERMINISTIC = ("grid", "cbs", "cbs-adaptive")


@dataclass(frozen=True)
class StrategyCurve:
    """Mean over held-out datasets and seeds, for k = 1..K."""

    strategy: str
    mean_best_of_k: list[float]
    solved_fraction: list[float]
    trials_to_solve: float | None  # mean k at which a dataset is first solved (K+1 if never)
    per_dataset: dict[str, list[float]] = field(default_factory=dict)  # dataset -> best-of-k


@dataclass(frozen=True)
class Simulation:
    strategies: tuple[StrategyCurve, ...]
    k: int
    seeds: int
    datasets: tuple[str, ...]
    n_configs: int
    tol: float
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "k": self.k, "seeds": self.seeds, "tol": self.tol, "n_configs": self.n_configs,
            "datasets": list(self.datasets), "notes": list(self.notes),
            "strategies": {
                c.strategy: {"mean_best_of_k": c.mean_best_of_k, "solved_fraction": c.solved_fraction,
                             "mean_trials_to_solve": c.trials_to_solve, "per_dataset": c.per_dataset}
                for c in self.strategies
            },
        }


def parse_strategies(text: str | Sequence[str]) -> list[str]:
    names = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    for n in names:
        if n not in STRATEGIES:
            raise InputError("unknown strategy", field="--strategies", value=n,
                             expected="comma list of " + ", ".join(STRATEGIES))
    if not names:
        raise InputError("no strategy given", field="--strategies", expected=", ".join(STRATEGIES))
    return names


def simulate(choose: Any, score: Any | None = None, *, strategies: Sequence[str] = STRATEGIES,
             k: int = 10, seeds: int = 10, tol: float = 0.01, cbs_k: int = 3,
             settings: AdaptiveSettings = AdaptiveSettings(),
             progress: Callable[[str, int, int], None] | None = None) -> Simulation:
    """Leave-one-dataset-out replay of ``strategies`` on ScoreMatrix ``choose`` (and ``score``)."""
    from staytuned import cbs

    score = choose if score is None else score
    if choose.config_ids != score.config_ids or choose.datasets != score.datasets:
        raise InputError("the choose and score matrices must have the same configs and datasets")
    n, m = choose.shape
    if m < 2:
        raise InputError("leave-one-out needs at least two datasets", value=m, expected=">= 2")
    if k < 1 or seeds < 1:
        raise InputError("k and seeds must be positive", value=(k, seeds))
    strategies = list(strategies)
    norm_c = np.asarray(choose.normalized)
    signed_c = np.asarray(choose.signed)
    norm_s = np.asarray(score.normalized)
    cov_s = np.asarray(score.covers(tol))
    space = table_space(choose.hps)
    best = {s: np.full((m, seeds, k), np.nan) for s in strategies}
    solved = {s: np.zeros((m, seeds, k)) for s in strategies}
    total = len(strategies) * m
    step = 0
    for j in range(m):
        rows = np.flatnonzero(~np.isnan(norm_c[:, j]) & ~np.isnan(norm_s[:, j]))
        if len(rows) == 0:
            continue
        kk = min(k, len(rows))
        others = [d for d in range(m) if d != j]
        offline = choose.subset(configs=rows, datasets=others)
        lookup = np.where(np.isnan(signed_c[rows, j]), -np.inf, signed_c[rows, j])  # failed: worst
        for strat in strategies:
            step += 1
            if progress is not None:
                progress(strat, step, total)
            for seed in range(seeds):
                if strat in DETERMINISTIC and seed > 0:
                    best[strat][j, seed] = best[strat][j, 0]
                    solved[strat][j, seed] = solved[strat][j, 0]
                    continue
                order = _order(strat, offline, lookup, [choose.hps[r] for r in rows], space, kk,
                               seed, tol, cbs_k, settings, cbs)
                vals = norm_s[rows[order], j]
                sol = cov_s[rows[order], j]
                b = np.maximum.accumulate(vals)
                s = np.logical_or.accumulate(sol).astype(float)
                best[strat][j, seed, :kk] = b
                solved[strat][j, seed, :kk] = s
                best[strat][j, seed, kk:] = b[-1]
                solved[strat][j, seed, kk:] = s[-1]
    curves = []
    for strat in strategies:
        b, s = best[strat], solved[strat]
        keep = ~np.isnan(b[:, 0, 0])
        first = np.where(s[keep].any(axis=2), s[keep].argmax(axis=2) + 1, k + 1)
        curves.append(StrategyCurve(
            strategy=strat,
            mean_best_of_k=[float(np.nanmean(b[keep][:, :, i])) for i in range(k)],
            solved_fraction=[float(np.mean(s[keep][:, :, i])) for i in range(k)],
            trials_to_solve=float(first.mean()),
            per_dataset={choose.datasets[j]: [float(x) for x in np.nanmean(b[j], axis=0)]
                         for j in range(m) if keep[j]},
        ))
    return Simulation(strategies=tuple(curves), k=k, seeds=seeds, datasets=tuple(choose.datasets),
                      n_configs=n, tol=tol, notes=tuple(choose.notes))


def _order(strat: str, offline: Any, lookup: np.ndarray, hps: list[Mapping[str, Any]],
           space: dict[str, Any], k: int, seed: int, tol: float, cbs_k: int,
           settings: AdaptiveSettings, cbs: Any) -> list[int]:
    """Indices (into the held-out dataset's candidate rows) of the first k configs tried."""
    if strat == "grid":
        return list(range(k))
    if strat == "cbs":
        return cbs.rank(offline, tol=tol, k=k).order.tolist()
    if strat == "cbs-adaptive":
        return adaptive_order(np.asarray(offline.normalized), lookup, k,
                              settings=AdaptiveSettings(tol=tol, beta=settings.beta,
                                                        best_bonus=settings.best_bonus),
                              covers=np.asarray(offline.covers(tol)))
    first: list[int] = []
    if strat == "cbs+tpe":
        first = cbs.rank(offline, tol=tol, k=min(cbs_k, k)).order.tolist()
    return _optuna_order(strat, lookup, hps, space, k, seed, first)


def _optuna_order(strat: str, lookup: np.ndarray, hps: list[Mapping[str, Any]],
                  space: dict[str, Any], k: int, seed: int, first: list[int]) -> list[int]:
    import optuna
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if strat == "random":
            sampler = optuna.samplers.RandomSampler(seed=seed)
        elif strat == "gp":
            sampler = optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup_trials(k))
        else:
            n_startup = len(first) if strat == "cbs+tpe" else startup_trials(k)
            sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(1, n_startup),
                                                 multivariate=True)
        study = optuna.create_study(direction="maximize", sampler=sampler)
    points = [_point(h, space) for h in hps]
    tried: list[int] = []

    def record(i: int) -> None:
        tried.append(i)
        value = float(lookup[i]) if np.isfinite(lookup[i]) else None
        study.add_trial(create_trial(
            params=points[i], distributions=space, value=value,
            state=TrialState.COMPLETE if value is not None else TrialState.FAIL))

    for i in first[:k]:
        record(i)
    while len(tried) < k:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trial = study.ask(space)
        proposal = trial.params
        study.tell(trial, state=TrialState.FAIL)  # the snapped config below is what ran
        record(_nearest(proposal, points, space, set(tried)))
    return tried


def table_space(hps: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Optuna distributions spanning a table's configs (see the module docstring)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    keys = sorted({k for h in hps for k in h})
    space: dict[str, Any] = {}
    for key in keys:
        vals = [h.get(key) for h in hps]
        nums = [v for v in vals if _is_num(v)]
        distinct = sorted(set(nums))
        if len(nums) == len(vals) and len(distinct) >= 3:
            lo, hi = float(distinct[0]), float(distinct[-1])
            log = lo > 0 and hi / lo >= 10
            space[key] = FloatDistribution(lo, hi, log=log)
        else:
            choices = sorted({_cat(v) for v in vals}, key=lambda x: (x is None, str(x)))
            space[key] = CategoricalDistribution(choices)
    return space


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))


def _cat(v: Any) -> Any:
    if v is None or isinstance(v, bool | int | float | str):
        return v
    return str(v)


def _point(h: Mapping[str, Any], space: Mapping[str, Any]) -> dict[str, Any]:
    from optuna.distributions import FloatDistribution

    return {k: float(h[k]) if isinstance(d, FloatDistribution) else _cat(h.get(k))
            for k, d in space.items()}


def _nearest(proposal: Mapping[str, Any], points: list[dict[str, Any]], space: Mapping[str, Any],
             taken: set[int]) -> int:
    """The untried config closest to a proposal (ranges scaled to [0, 1], log where log)."""
    from optuna.distributions import FloatDistribution

    best_i, best_d = -1, math.inf
    for i, p in enumerate(points):
        if i in taken:
            continue
        d = 0.0
        for key, dist in space.items():
            a, b = proposal.get(key), p.get(key)
            if isinstance(dist, FloatDistribution):
                f = (lambda x: math.log(x)) if dist.log else (lambda x: x)
                span = f(dist.high) - f(dist.low) or 1.0
                d += abs(f(float(a)) - f(float(b))) / span
            else:
                d += 0.0 if a == b else 1.0
        if d < best_d:
            best_i, best_d = i, d
    return best_i
