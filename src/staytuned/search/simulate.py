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
  its sampler plans with, over the candidate rows; ``transfer`` with its
  :class:`~staytuned.search.strategies.transfer.TransferRule`, likewise;
* a strategy that declares a ``ranker`` (one of :data:`staytuned.cbs.portfolios.RANKERS`) tries
  that ranking's configs first, the others CBS's;
* static rankings (``rankers``: ``cbs``, ``zeroshot``, ``greedy-portfolio``, ``best-average``)
  are reported beside the strategies as ``static:<ranker>``: the first k configs of
  :func:`~staytuned.cbs.portfolios.rank_by` on the other datasets;
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
from staytuned.search.strategies.transfer import Transfer

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
    holdouts: tuple[str, ...] = ()  # the held-out datasets (all when empty)

    def to_dict(self) -> dict[str, Any]:
        return {
            "k": self.k, "seeds": self.seeds, "tol": self.tol, "n_configs": self.n_configs,
            "datasets": list(self.datasets), "notes": list(self.notes),
            "holdouts": list(self.holdouts or self.datasets),
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


STATIC = "static:"  # curve-name prefix of the static rankings


def simulate(choose: ScoreMatrix, score: ScoreMatrix | None = None, *,
             strategies: Sequence[str] = STRATEGIES, k: int = 10, seeds: int = 10,
             tol: float = 0.01, cbs_k: int = 3, settings: AdaptiveSettings = AdaptiveSettings(),
             rankers: Sequence[str] = (), holdouts: Sequence[int] | None = None,
             progress: Callable[[str, int, int], None] | None = None) -> Simulation:
    """Leave-one-dataset-out replay of ``strategies`` (and the static ``rankers``) on
    ScoreMatrix ``choose`` (and ``score``); ``holdouts``: the column indices held out in turn
    (default all; the offline side is always every other dataset)."""
    from staytuned import cbs
    from staytuned.cbs.portfolios import RANKERS, rank_by

    score = choose if score is None else score
    if choose.config_ids != score.config_ids or choose.datasets != score.datasets:
        raise InputError("the choose and score matrices must have the same configs and datasets")
    n, m = choose.shape
    if m < 2:
        raise InputError("leave-one-out needs at least two datasets", value=m, expected=">= 2")
    if k < 1 or seeds < 1:
        raise InputError("k and seeds must be positive", value=(k, seeds))
    for r in rankers:
        if r not in RANKERS:
            raise InputError("unknown static ranking", field="rankers", value=r,
                             expected="comma list of " + ", ".join(RANKERS))
    held = list(range(m)) if holdouts is None else sorted({int(j) for j in holdouts})
    if not held or held[0] < 0 or held[-1] >= m:
        raise InputError("held-out dataset index out of range", field="holdouts",
                         value=holdouts, expected=f"indices in 0..{m - 1}")
    rankers = list(rankers)
    names = list(strategies) + [STATIC + r for r in rankers]
    strategies = list(strategies)
    norm_c = np.asarray(cbs.normalize(choose))
    signed_c = np.asarray(choose.signed)
    norm_s = np.asarray(cbs.normalize(score))
    cov_s = np.asarray(cbs.covers(score, tol))
    space = table_space(choose.hps)
    wanted = {getattr(strategy_class(s), "ranker", "cbs") for s in strategies
              if strategy_class(s).needs == "ranking"} | set(rankers)
    best = {s: np.full((m, seeds, k), np.nan) for s in names}
    solved = {s: np.zeros((m, seeds, k)) for s in names}
    total = len(names) * len(held)
    step = 0

    def record(name: str, j: int, seed: int, order: Sequence[int], kk: int) -> None:
        vals = norm_s[rows[np.asarray(order, dtype=int)], j]
        sol = cov_s[rows[np.asarray(order, dtype=int)], j]
        b = np.maximum.accumulate(vals)
        s = np.logical_or.accumulate(sol).astype(float)
        best[name][j, seed, :kk] = b
        solved[name][j, seed, :kk] = s
        best[name][j, seed, kk:] = b[-1]
        solved[name][j, seed, kk:] = s[-1]

    for j in held:
        rows = np.flatnonzero(~np.isnan(norm_c[:, j]) & ~np.isnan(norm_s[:, j]))
        if len(rows) == 0:
            step += len(names)
            continue
        kk = min(k, len(rows))
        others = [d for d in range(m) if d != j]
        offline = choose.subset(configs=rows, datasets=others)
        lookup = np.where(np.isnan(signed_c[rows, j]), -np.inf, signed_c[rows, j])  # failed: worst
        orders = {r: rank_by(offline, r, tol=tol, k=kk).order.tolist() for r in sorted(wanted)}
        sources = {r: OfflineSource(ranked=tuple(dict(offline.hps[i]) for i in o), matrix=offline,
                                    provenance="the other datasets") for r, o in orders.items()}
        plain = OfflineSource(ranked=(), matrix=offline, provenance="the other datasets")
        for strat in strategies:
            ranker = getattr(strategy_class(strat), "ranker", "cbs")
            ranked = orders.get(ranker, [])
            for seed in range(seeds):
                strategy = replay_strategy(strat, space, seed=seed, k=kk, cbs_k=cbs_k,
                                           offline=sources.get(ranker, plain), tol=tol,
                                           settings=settings)
                if seed > 0 and _deterministic(strategy):
                    best[strat][j, seed] = best[strat][j, 0]
                    solved[strat][j, seed] = solved[strat][j, 0]
                    continue
                record(strat, j, seed, _order(strategy, lookup, [choose.hps[r] for r in rows],
                                              ranked), kk)
            step += 1
            if progress is not None:  # one strategy replayed on one held-out dataset
                progress(strat, step, total)
        for r in rankers:  # deterministic: one order for every seed
            for seed in range(seeds):
                record(STATIC + r, j, seed, orders[r][:kk], kk)
            step += 1
            if progress is not None:
                progress(STATIC + r, step, total)
    curves = []
    for strat in names:
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
                      n_configs=n, tol=tol, notes=tuple(choose.notes),
                      holdouts=tuple(choose.datasets[j] for j in held) if holdouts is not None else ())


def _deterministic(strategy: Strategy) -> bool:
    """The same order for every seed: nothing is sampled."""
    return isinstance(strategy, Grid | CBSAdaptive) or strategy.ranked_first >= strategy.n_trials
    # (Transfer is a CBSAdaptive: deterministic too)


def _order(strategy: Strategy, lookup: np.ndarray, hps: list[Mapping[str, Any]],
           ranked: list[int]) -> list[int]:
    """Indices (into the held-out dataset's candidate rows) of the first k configs tried;
    ``ranked``: the candidate rows in CBS order."""
    from staytuned import cbs

    k = strategy.n_trials
    if isinstance(strategy, Grid):
        return list(range(k))
    if isinstance(strategy, Transfer):
        return strategy.rule().order(lookup, k)
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
        encoded = _Encoded(points, space)
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
            record(encoded.nearest(proposal, tried))
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


class _Encoded:
    """The candidate configs encoded once, so snapping a proposal is one numpy pass (a
    2,000-config table is replayed thousands of times in the bench)."""

    def __init__(self, points: list[dict[str, Any]], space: SearchSpace) -> None:
        self._space = space
        self._cont = [p for p in space.params if p.continuous]
        self._cats = [p for p in space.params if not p.continuous]
        self._x = np.array([[self._scale(p, float(pt[p.name])) for p in self._cont]
                            for pt in points]).reshape(len(points), len(self._cont))
        self._c = [[pt.get(p.name) for pt in points] for p in self._cats]

    @staticmethod
    def _scale(param: Param, v: float) -> float:
        """Ranges scaled to [0, 1], log where log."""
        f = math.log if param.log else (lambda x: x)
        low, high = param.bounds()
        return (f(v) - f(low)) / (f(high) - f(low) or 1.0)

    def nearest(self, proposal: Mapping[str, Any], taken: Sequence[int]) -> int:
        """The untried config closest to a proposal (first in table order on ties)."""
        x = np.array([self._scale(p, float(proposal[p.name])) for p in self._cont])
        d = np.abs(self._x - x[None, :]).sum(axis=1)
        for p, col in zip(self._cats, self._c, strict=True):
            want = proposal.get(p.name)
            d = d + np.array([0.0 if v == want else 1.0 for v in col])
        d[list(taken)] = np.inf
        return int(np.argmin(d))
