"""Replay search strategies on a results table used as a black box (leave one dataset out).

For each held-out dataset: the candidate configs are those with a result on it; the objective
looks up the held-out dataset's *choose* score of the proposed config (e.g. its -Dev score); the
offline knowledge of the CBS strategies (ranking, score matrix) comes from the other datasets
only. After k trials the held-out dataset gets the best *score*-matrix normalized value among the
tried configs (e.g. -Test; 1.0 = its best) and counts as solved when one of them is within the
tolerance of its best -- the same definitions as ``staytuned cbs evaluate``, so the ``cbs``
curve here equals the CBS curve there.

Every strategy is built by :func:`~staytuned.search.strategies.build_strategy`, as ``tune``
builds it (same samplers and settings, ``n_trials`` = k):

* its CBS-ranked configs first (``ranked_first``: all k for ``cbs``, ``cbs_k`` for ``cbs+tpe``);
* then its Optuna sampler (random, tpe, gp, cbs+tpe's TPE) in an in-memory study over a search
  space built from the table's HP values: numeric HPs with 3+ values are ranges (log scale when
  they span 10x or more), the others categorical. A proposal is snapped to the nearest untried
  config of the held-out dataset (so every trial is a distinct real config: a fair budget for
  every strategy), and the trial the sampler learns from carries the snapped config and its score;
* ``cbs-adaptive`` picks with :func:`~staytuned.search.strategies.adaptive.next_config`, the rule
  its sampler plans with, over the candidate rows;
* ``grid`` tries the table's configs in table order (a grid of exactly the table's configs).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np

from staytuned.errors import InputError
from staytuned.search.space import Param, SearchSpace
from staytuned.search.strategies import (
    STRATEGIES,
    OfflineSource,
    Strategy,
    build_strategy,
    strategy_class,
)
from staytuned.search.strategies.adaptive import (
    AdaptiveSettings,
    CBSAdaptive,
    adaptive_order,
)
from staytuned.search.strategies.grid import Grid

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler

    from staytuned.results import ScoreMatrix


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
            raise InputError("unknown strategy", field="strategies", value=n,
                             expected="comma list of " + ", ".join(STRATEGIES))
    if not names:
        raise InputError("no strategy given", field="strategies", expected=", ".join(STRATEGIES))
    return names


def replay_strategy(name: str, space: SearchSpace, *, seed: int, k: int, cbs_k: int,
                    offline: OfflineSource, tol: float = 0.01,
                    settings: AdaptiveSettings = AdaptiveSettings()) -> Strategy:
    """The strategy replayed on one held-out dataset: ``tune``'s for a ``k``-trial study, with
    the other datasets (``offline``) as its offline source."""
    return build_strategy(name, space=space, seed=seed, n_trials=k, cbs_k=cbs_k, offline=offline,
                          adaptive=AdaptiveSettings(tol=tol, beta=settings.beta,
                                                    best_bonus=settings.best_bonus))


def simulate(choose: ScoreMatrix, score: ScoreMatrix | None = None, *,
             strategies: Sequence[str] = STRATEGIES, k: int = 10, seeds: int = 10,
             tol: float = 0.01, cbs_k: int = 3, settings: AdaptiveSettings = AdaptiveSettings(),
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
    norm_c = np.asarray(cbs.normalize(choose))
    signed_c = np.asarray(choose.signed)
    norm_s = np.asarray(cbs.normalize(score))
    cov_s = np.asarray(cbs.covers(score, tol))
    space = table_space(choose.hps)
    ranks = any(strategy_class(s).needs == "ranking" for s in strategies)
    best = {s: np.full((m, seeds, k), np.nan) for s in strategies}
    solved = {s: np.zeros((m, seeds, k)) for s in strategies}
    total = len(strategies) * m
    step = 0
    for j in range(m):
        rows = np.flatnonzero(~np.isnan(norm_c[:, j]) & ~np.isnan(norm_s[:, j]))
        if len(rows) == 0:
            step += len(strategies)
            continue
        kk = min(k, len(rows))
        others = [d for d in range(m) if d != j]
        offline = choose.subset(configs=rows, datasets=others)
        lookup = np.where(np.isnan(signed_c[rows, j]), -np.inf, signed_c[rows, j])  # failed: worst
        ranked = cbs.rank(offline, tol=tol, k=kk).order.tolist() if ranks else []
        source = OfflineSource(ranked=tuple(dict(offline.hps[r]) for r in ranked), matrix=offline,
                               provenance="the other datasets")
        for strat in strategies:
            for seed in range(seeds):
                strategy = replay_strategy(strat, space, seed=seed, k=kk, cbs_k=cbs_k,
                                           offline=source, tol=tol, settings=settings)
                if seed > 0 and _deterministic(strategy):
                    best[strat][j, seed] = best[strat][j, 0]
                    solved[strat][j, seed] = solved[strat][j, 0]
                    continue
                order = _order(strategy, lookup, [choose.hps[r] for r in rows], ranked)
                vals = norm_s[rows[order], j]
                sol = cov_s[rows[order], j]
                b = np.maximum.accumulate(vals)
                s = np.logical_or.accumulate(sol).astype(float)
                best[strat][j, seed, :kk] = b
                solved[strat][j, seed, :kk] = s
                best[strat][j, seed, kk:] = b[-1]
                solved[strat][j, seed, kk:] = s[-1]
            step += 1
            if progress is not None:  # one strategy replayed on one held-out dataset
                progress(strat, step, total)
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


def _deterministic(strategy: Strategy) -> bool:
    """The same order for every seed: nothing is sampled."""
    return isinstance(strategy, Grid | CBSAdaptive) or strategy.ranked_first >= strategy.n_trials


def _order(strategy: Strategy, lookup: np.ndarray, hps: list[Mapping[str, Any]],
           ranked: list[int]) -> list[int]:
    """Indices (into the held-out dataset's candidate rows) of the first k configs tried;
    ``ranked``: the candidate rows in CBS order."""
    from staytuned import cbs

    k = strategy.n_trials
    if isinstance(strategy, Grid):
        return list(range(k))
    if isinstance(strategy, CBSAdaptive):
        offline = strategy.offline.matrix if strategy.offline is not None else None
        if offline is None:
            raise InputError("cbs-adaptive needs per-dataset scores", field="offline")
        return adaptive_order(np.asarray(cbs.normalize(offline)), lookup, k,
                              settings=strategy.settings,
                              covers=np.asarray(cbs.covers(offline, strategy.settings.tol)))
    first = ranked[: strategy.ranked_first]
    if len(first) >= k:
        return first[:k]
    return _optuna_order(strategy.sampler(), lookup, hps, strategy.space, k, first)


def _optuna_order(sampler: BaseSampler, lookup: np.ndarray, hps: list[Mapping[str, Any]],
                  space: SearchSpace, k: int, first: list[int]) -> list[int]:
    import warnings

    import optuna
    from optuna.trial import TrialState, create_trial

    distributions = {p.name: p.distribution() for p in space.params}
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a log line per replayed trial otherwise
    try:
        study = optuna.create_study(direction="maximize", sampler=sampler)
        points = [_point(h, space) for h in hps]
        tried: list[int] = []

        def record(i: int) -> None:
            tried.append(i)
            value = float(lookup[i]) if np.isfinite(lookup[i]) else None
            study.add_trial(create_trial(
                params=points[i], distributions=distributions, value=value,
                state=TrialState.COMPLETE if value is not None else TrialState.FAIL))

        for i in first[:k]:
            record(i)
        while len(tried) < k:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                trial = study.ask(distributions)
            proposal = trial.params
            study.tell(trial, state=TrialState.FAIL)  # the snapped config below is what ran
            record(_nearest(proposal, points, space, set(tried)))
    finally:
        optuna.logging.set_verbosity(level)
    return tried


def table_space(hps: Sequence[Mapping[str, Any]]) -> SearchSpace:
    """A search space spanning a table's configs (see the module docstring)."""
    keys = sorted({k for h in hps for k in h})
    params: list[Param] = []
    for key in keys:
        vals = [h.get(key) for h in hps]
        nums = [v for v in vals if _is_num(v)]
        distinct = sorted(set(nums))
        if len(nums) == len(vals) and len(distinct) >= 3:
            lo, hi = float(distinct[0]), float(distinct[-1])
            params.append(Param(key, "float", low=lo, high=hi, log=lo > 0 and hi / lo >= 10,
                                values=tuple(float(v) for v in distinct)))
        else:
            choices = sorted({_cat(v) for v in vals}, key=lambda x: (x is None, str(x)))
            params.append(Param(key, "categorical", values=tuple(choices)))
    return SearchSpace(name="results-table", params=tuple(params), source="<results table>")


def _is_num(v: Any) -> TypeGuard[float]:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))


def _cat(v: Any) -> Any:
    if v is None or isinstance(v, bool | int | float | str):
        return v
    return str(v)


def _point(h: Mapping[str, Any], space: SearchSpace) -> dict[str, Any]:
    return {p.name: float(h[p.name]) if p.continuous else _cat(h.get(p.name))
            for p in space.params}


def _nearest(proposal: Mapping[str, Any], points: list[dict[str, Any]], space: SearchSpace,
             taken: set[int]) -> int:
    """The untried config closest to a proposal (ranges scaled to [0, 1], log where log)."""
    best_i, best_d = -1, math.inf
    for i, p in enumerate(points):
        if i in taken:
            continue
        d = 0.0
        for param in space.params:
            if param.continuous:
                f = math.log if param.log else (lambda x: x)
                low, high = param.bounds()
                span = f(high) - f(low) or 1.0
                d += abs(f(float(proposal[param.name])) - f(float(p[param.name]))) / span
            else:
                d += 0.0 if proposal.get(param.name) == p.get(param.name) else 1.0
        if d < best_d:
            best_i, best_d = i, d
    return best_i
