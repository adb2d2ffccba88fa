"""Search strategies as Optuna samplers and pruners.

============== ============================================================================
``grid``       every grid point of the space: Optuna's GridSampler when the space has no
               conditional params in this cell, else the grid points enqueued in order
``random``     RandomSampler
``tpe``        TPESampler (multivariate, grouped for conditionals, constant liar so concurrent
               workers do not get the same config)
``gp``         :class:`DistinctGPSampler`: Optuna's GPSampler (Gaussian-process Bayesian
               optimization), with a guard so concurrent workers never get the same config
``cbs``        the CBS-ranked configs enqueued in order (``study.enqueue_trial``); RandomSampler
               once the ranking is used up
``cbs+tpe``    CBS's top ``k`` enqueued first, then TPE, which sees their results
``cbs-adaptive`` :class:`CBSAdaptiveSampler`: after each result, the offline datasets that agree
               with it weigh more and the next config maximizes their weighted coverage
============== ============================================================================
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna

from staytuned.errors import InputError
from staytuned.search.adaptive import AdaptiveSettings, next_config
from staytuned.space import SearchSpace

STRATEGIES = ("grid", "random", "tpe", "gp", "cbs", "cbs+tpe", "cbs-adaptive")
CBS_STRATEGIES = ("cbs", "cbs+tpe", "cbs-adaptive")
PRUNERS = ("none", "median", "halving", "hyperband")
PLAN_ATTR = "staytuned:planned_params"


def check_strategy(name: str) -> str:
    if name not in STRATEGIES:
        raise InputError("unknown strategy", field="strategy", value=name,
                         expected="one of " + ", ".join(STRATEGIES))
    return name


def startup_trials(n_trials: int) -> int:
    """Random trials before TPE/GP model: Optuna's default of 10 would make a 10-trial TPE run
    pure random search, so scale it with the budget."""
    return max(2, min(10, n_trials // 3))


def make_sampler(strategy: str, space: SearchSpace, *, seed: int = 0, n_trials: int = 10,
                 context: Mapping[str, Any] | None = None, cbs_k: int = 5,
                 offline: OfflineSource | None = None, storage_url: str | None = None) -> Any:
    """The Optuna sampler of a strategy (enqueued CBS configs are added by the study runner).

    ``storage_url``: lets cbs-adaptive workers of one study plan their next configs one at a time.
    """
    check_strategy(strategy)
    with warnings.catch_warnings():  # group/constant_liar are "experimental" in name only
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _make_sampler(strategy, space, seed=seed, n_trials=n_trials, context=context,
                             cbs_k=cbs_k, offline=offline, storage_url=storage_url)


def _make_sampler(strategy: str, space: SearchSpace, *, seed: int, n_trials: int,
                  context: Mapping[str, Any] | None, cbs_k: int,
                  offline: OfflineSource | None, storage_url: str | None) -> Any:
    if strategy == "grid":
        if _cartesian(space, context):
            grid = {p.name: p.grid_values() for p in space.params if p.active(_ctx(space, context))}
            return optuna.samplers.GridSampler(grid, seed=seed)
        return optuna.samplers.RandomSampler(seed=seed)  # unused: the points are enqueued
    if strategy in ("random", "cbs"):
        return optuna.samplers.RandomSampler(seed=seed)
    if strategy in ("tpe", "cbs+tpe"):
        n_startup = cbs_k if strategy == "cbs+tpe" else startup_trials(n_trials)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(1, n_startup),
                                          multivariate=True, group=True, constant_liar=True)
    if strategy == "gp":
        # Conditional params are sampled independently by GP: expected, not worth a warning.
        gp = optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup_trials(n_trials),
                                       warn_independent_sampling=False)
        return DistinctGPSampler(gp, space, context=context, seed=seed, lock_url=storage_url)
    if offline is None or offline.matrix is None:
        raise InputError("cbs-adaptive needs an offline results table (per-dataset scores)",
                         field="cbs_table", expected="--cbs-table PATH (e.g. a `results export`)")
    fallback = optuna.samplers.TPESampler(seed=seed, n_startup_trials=1, constant_liar=True)
    return CBSAdaptiveSampler(space, offline.matrix, context=context, fallback=fallback,
                              lock_url=storage_url)


def make_pruner(name: str | None, *, max_epochs: float = 3) -> Any:
    """Optional pruning from per-epoch validation scores."""
    import optuna

    name = name or "none"
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1,
                                              max_resource=max(1, int(round(max_epochs))))
    raise InputError("unknown pruner", field="pruner", value=name,
                     expected="one of " + ", ".join(PRUNERS))


def _ctx(space: SearchSpace, context: Mapping[str, Any] | None) -> dict[str, Any]:
    return {**(context or {}), **space.fixed}


def _cartesian(space: SearchSpace, context: Mapping[str, Any] | None) -> bool:
    """True when the grid is a plain product in this cell (conditions depend on axes/fixed only)."""
    searched = set(space.names)
    return all(not any(name in searched for name, _ in p.when) for p in space.params)


# ------------------------------------------------------------------------------------------
# Offline source: ranked configs (cbs, cbs+tpe) and per-dataset scores (cbs-adaptive)


@dataclass(frozen=True)
class OfflineSource:
    """What CBS knows before the first trial: a ranking and, from a table, the score matrix."""

    ranked: tuple[dict[str, Any], ...]
    matrix: Any = None  # staytuned.results.ScoreMatrix | None
    provenance: str = ""


def offline_from_table(path: str, *, model: str | None = None, method: str | None = None,
                       train_size: int | None = None, columns: Any = None,
                       exclude_dataset: str | None = None, tol: float = 0.01) -> OfflineSource:
    """Rank a results table with CBS (the slice of this model/method/train size when it has one)."""
    from staytuned import cbs
    from staytuned.results import load_results, nearest_size

    table = load_results(path, columns)
    kw: dict[str, Any] = {}
    for axis, want in (("model", model), ("method", method), ("train_size", train_size)):
        vals = table.values(axis)
        if len(vals) > 1 and axis == "train_size":
            kw[axis] = nearest_size([int(v) for v in vals], want)
        elif len(vals) > 1 and want is not None:
            if any(str(v) == str(want) for v in vals):
                kw[axis] = want
            else:  # another model's grid still ranks configs; prefer our method though
                kw[axis] = vals[0] if axis != "method" else want
    if kw:
        table = table.slice(**kw)
    if exclude_dataset is not None:
        keep = [d for d in table.datasets if d != exclude_dataset]
        table = table.slice(datasets=keep)
    matrix = table.score_matrix()
    ranking = cbs.rank(matrix, tol=tol)
    ranked = tuple(dict(step.hps) for step in ranking.steps)
    return OfflineSource(ranked=ranked, matrix=matrix, provenance=f"CBS ranking of {path}")


def project(config: Mapping[str, Any], space: SearchSpace,
            context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Map a recommended config into the space: fitting values kept, discrete ones snapped to
    the nearest choice, out-of-range numbers clipped; params it lacks are left to the sampler."""
    ctx = _ctx(space, context)
    out: dict[str, Any] = {}
    for p in space.params:
        if not p.active({**ctx, **out}):
            continue
        if p.name not in config or config[p.name] is None:
            continue
        v = config[p.name]
        if p.contains(v):
            if not p.continuous:  # the space's own spelling of the value (16 vs 16.0)
                out[p.name] = next(c for c in p.values if _close(c, v))
            else:
                out[p.name] = int(round(float(v))) if p.type == "int" else float(v)
            continue
        if p.type == "categorical" and not all(isinstance(c, int | float) for c in p.values):
            continue  # a string not offered: let the sampler choose
        try:
            x = float(v)
        except (TypeError, ValueError):
            continue
        if not p.continuous:
            out[p.name] = min(p.values, key=lambda c: _dist(float(c), x, p.log or x > 0 and min(p.values) > 0))
        else:
            clipped = min(max(x, float(p.low)), float(p.high))
            out[p.name] = int(round(clipped)) if p.type == "int" else clipped
    return out


def _dist(a: float, b: float, log: bool) -> float:
    if log and a > 0 and b > 0:
        return abs(np.log(a) - np.log(b))
    return abs(a - b)


def cbs_queue(offline: OfflineSource, space: SearchSpace, context: Mapping[str, Any] | None,
              limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` distinct ranked configs, as space params for ``enqueue_trial``."""
    out: list[dict[str, Any]] = []
    for cfg in offline.ranked:
        params = project(cfg, space, context)
        if params and params not in out:
            out.append(params)
        if len(out) >= limit:
            break
    return out


# ------------------------------------------------------------------------------------------
# The adaptive sampler


class _PlanningSampler(optuna.samplers.BaseSampler):
    """Base of samplers that decide a trial's whole config in ``before_trial``.

    Why: a plan stored on the trial (system attr ``PLAN_ATTR``) is visible to every worker, so
    concurrent workers, planning one at a time under the storage lock, never pick a config that
    another worker is running. Subclasses implement ``_plan`` (return a config, or None to let
    ``inner`` sample); everything a plan does not fix is sampled by ``inner``.
    """

    def __init__(self, inner: Any, *, lock_url: str | None, lock_name: str) -> None:
        self._inner = inner
        self._lock_url = lock_url
        self._lock_name = lock_name
        self._plans: dict[int, dict[str, Any]] = {}

    def _plan(self, study: Any, trial: Any) -> dict[str, Any] | None:
        raise NotImplementedError

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        return {}  # whole configs are planned in before_trial

    def sample_relative(self, study: Any, trial: Any, search_space: Any) -> dict[str, Any]:
        return {}

    def before_trial(self, study: Any, trial: Any) -> None:
        from staytuned.search.storage import enqueue_lock

        self._inner.before_trial(study, trial)
        if "fixed_params" in trial.system_attrs or trial.params:
            return  # enqueued or retried: its params are already decided
        if self._lock_url is None:
            self._store(study, trial, self._plan(study, trial))
            return
        with enqueue_lock(self._lock_url, f"{study.study_name}:{self._lock_name}"):
            self._store(study, trial, self._plan(study, trial))

    def _store(self, study: Any, trial: Any, plan: dict[str, Any] | None) -> None:
        if plan is None:
            return
        self._plans[trial.number] = plan
        study._storage.set_trial_system_attr(trial._trial_id, PLAN_ATTR, plan)

    def sample_independent(self, study: Any, trial: Any, name: str, dist: Any) -> Any:
        plan = self._plans.get(trial.number) or trial.system_attrs.get(PLAN_ATTR) or {}
        if name in plan:
            try:
                if dist._contains(dist.to_internal_repr(plan[name])):
                    return plan[name]
            except (ValueError, TypeError):
                pass
        return self._inner.sample_independent(study, trial, name, dist)

    def after_trial(self, study: Any, trial: Any, state: Any, values: Sequence[float] | None) -> None:
        self._plans.pop(trial.number, None)
        self._inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()


class CBSAdaptiveSampler(_PlanningSampler):
    """Optuna sampler: chooses whole configs with :func:`staytuned.search.adaptive.next_config`.

    The candidates are the offline table's configs that fit the space. The plan of a trial is
    decided in ``before_trial`` and stored as a system attr, so concurrent workers treat a running
    trial's config as taken. When every candidate has been tried, ``fallback`` (TPE) takes over.
    """

    def __init__(self, space: SearchSpace, matrix: Any, *, context: Mapping[str, Any] | None = None,
                 fallback: Any = None, settings: AdaptiveSettings = AdaptiveSettings(),
                 lock_url: str | None = None) -> None:
        super().__init__(fallback or optuna.samplers.TPESampler(n_startup_trials=1),
                         lock_url=lock_url, lock_name="cbs-adaptive-plan")
        self._space = space
        self._context = dict(context or {})
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
        self._norm = np.asarray(matrix.normalized)[rows]
        self._covers = np.asarray(matrix.covers(settings.tol))[rows]
        self._params = params

    def _plan(self, study: Any, trial: Any) -> dict[str, Any] | None:
        from optuna.trial import TrialState
        tried, observed = [], []
        sign = 1.0 if study.direction.name == "MAXIMIZE" else -1.0
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING,
                                                          TrialState.PRUNED, TrialState.FAIL)):
            if t.number == trial.number:
                continue
            params = t.system_attrs.get(PLAN_ATTR) or t.params
            row = self._row_of(params)
            if row is None:
                continue
            tried.append(row)
            ok = t.state == TrialState.COMPLETE and t.value is not None
            # running/failed configs count as tried; their score is unknown (worst for failures)
            observed.append(sign * t.value if ok else (-np.inf if t.state == TrialState.FAIL
                                                       else np.nan))
        untried = [i for i in range(len(self._params)) if i not in set(tried)]
        if not untried:
            return None  # every candidate tried: the fallback (TPE) samples
        obs = np.array(observed, dtype=float)
        finite = np.isfinite(obs)
        if (~finite).any() and finite.any():  # failures rank below every success
            obs = np.where(np.isneginf(obs), np.nanmin(np.where(finite, obs, np.nan)) - 1.0, obs)
        row = next_config(self._norm, tried, obs.tolist(), untried, self._settings, self._covers)
        return self._params[row]

    def _row_of(self, params: Mapping[str, Any]) -> int | None:
        for i, cand in enumerate(self._params):
            if all(k in params and _close(params[k], v) for k, v in cand.items()):
                return i
        return None


# ------------------------------------------------------------------------------------------
# GP without duplicates


class DistinctGPSampler(_PlanningSampler):
    """Optuna's GPSampler that never hands a running or already tried config to a new trial.

    Why: TPE has ``constant_liar``; GPSampler has none. Its q-batch acquisition does account for
    running trials, but only for those whose params it can already see: workers asking at the same
    moment fit on the same storage and can propose the same point, workers with equal seeds draw
    the same random startup configs, and in a finite (grid-snapped) space the GP re-proposes
    finished configs. So each new trial's whole config is decided in ``before_trial``, one worker
    at a time (the storage lock cbs-adaptive uses), and stored on the trial, where the other
    workers see it as taken. The GP proposes; a proposal equal to a running, finished or failed
    trial's config is replaced by a seeded random one that is not taken (an untried grid point when
    the space is finite). Gaussian-process BO itself stays Optuna's.
    """

    def __init__(self, gp: Any, space: SearchSpace, *, context: Mapping[str, Any] | None = None,
                 seed: int | None = None, lock_url: str | None = None) -> None:
        super().__init__(gp, lock_url=lock_url, lock_name="gp-plan")
        self._gp = gp
        self._space = space
        self._context = dict(context or {})
        self._rng = np.random.default_rng(seed)
        # Another stream than the GP's own random startup sampler (seeded ``seed``), which is
        # what proposed the duplicate in the first place.
        self._random = optuna.samplers.RandomSampler(seed=None if seed is None else seed + 7919)

    def _plan(self, study: Any, trial: Any) -> dict[str, Any] | None:
        taken = _taken_configs(study, trial.number)
        plan = self._propose(study, trial, use_gp=True)  # the GP's relative sampling runs here
        if any(_same_config(plan, t) for t in taken):
            plan = self._untaken(study, trial, taken) or plan  # all taken: a repeat is unavoidable
        return plan

    def _propose(self, study: Any, trial: Any, *, use_gp: bool) -> dict[str, Any]:
        """A whole config, in the space's order so conditions resolve: with ``use_gp`` the GP's
        relative proposal and its independent draws for the rest (startup trials, conditional
        params); else random draws."""
        relative: dict[str, Any] = {}
        independent = self._gp.sample_independent if use_gp else self._random.sample_independent
        if use_gp:
            search_space = self._gp.infer_relative_search_space(study, trial)
            if search_space:
                relative = self._gp.sample_relative(study, trial, search_space)
        ctx = _ctx(self._space, self._context)
        config: dict[str, Any] = {}
        for p in self._space.params:
            if not p.active(ctx):
                continue
            value = relative[p.name] if p.name in relative else independent(
                study, trial, p.name, p.distribution())
            ctx[p.name] = config[p.name] = value.item() if isinstance(value, np.generic) else value
        return config

    def _untaken(self, study: Any, trial: Any, taken: list[dict[str, Any]]) -> dict[str, Any] | None:
        if not any(p.continuous for p in self._space.params):
            free = [c for c in (self._space.params_of(g, self._context)
                                for g in self._space.grid(self._context))
                    if c is not None and not any(_same_config(c, t) for t in taken)]
            return free[int(self._rng.integers(len(free)))] if free else None
        for _ in range(100):  # continuous draws repeat a taken config with probability ~0
            config = self._propose(study, trial, use_gp=False)
            if not any(_same_config(config, t) for t in taken):
                return config
        return None

    def reseed_rng(self) -> None:
        super().reseed_rng()
        self._random.reseed_rng()


def _taken_configs(study: Any, number: int) -> list[dict[str, Any]]:
    """Configs of the other trials that are running (planned or enqueued ones included) or
    finished: repeating one wastes a trial (training runs are seeded, so deterministic)."""
    from optuna.trial import TrialState

    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.COMPLETE,
                                                      TrialState.PRUNED, TrialState.FAIL)):
        if t.number == number:
            continue
        config = {**t.system_attrs.get("fixed_params", {}), **(t.system_attrs.get(PLAN_ATTR) or {}),
                  **t.params}
        if config:
            out.append(config)
    return out


def _same_config(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return bool(a) and set(a) == set(b) and all(_close(a[k], b[k]) for k in a)


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    try:
        return bool(np.isclose(float(a), float(b), rtol=1e-6, atol=1e-12))
    except (TypeError, ValueError):
        return a == b
