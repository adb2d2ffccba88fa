"""Samplers that decide a trial's whole config up front, one worker at a time.

Why: a plan stored on the trial (system attr ``PLAN_ATTR``) is visible to every worker, so
workers planning one at a time under the study's storage lock (:func:`plan_lock`) never pick a
config that another worker is running or has run, whether they are ``--workers`` of one command
or separate commands on other machines, with equal seeds or not. Every strategy's sampler is one
of these (:class:`DistinctSampler` around Optuna's own sampler, or cbs-adaptive's planner).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna

from staytuned.search.strategies.base import same_config

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.samplers import BaseSampler
    from optuna.study import Study
    from optuna.trial import FrozenTrial, TrialState

    from staytuned.search.space import SearchSpace

PLAN_ATTR = "staytuned:planned_params"

_held = threading.local()


@contextlib.contextmanager
def plan_lock(url: str | None, study_name: str) -> Iterator[None]:
    """The study's storage lock (:func:`~staytuned.search.storage.enqueue_lock`, the one its
    queue is enqueued under): a file lock beside a SQLite database, a PostgreSQL advisory lock
    shared by every machine. Re-entrant within a thread (the worker loop holds it around
    ``study.ask()``, whose sampler takes it again); ``url`` None: no lock (an in-memory study)."""
    if url is None:
        yield
        return
    from staytuned.search.storage import enqueue_lock, normalize_url

    key = (normalize_url(url), study_name)
    held: set[tuple[str, str]] = getattr(_held, "keys", None) or set()
    _held.keys = held
    if key in held:
        yield
        return
    with enqueue_lock(url, study_name):
        held.add(key)
        try:
            yield
        finally:
            held.discard(key)


class PlanningSampler(optuna.samplers.BaseSampler):
    """Base of samplers that decide a trial's whole config in ``before_trial``.

    Subclasses implement ``_plan`` (return a config, or None to let ``inner`` sample);
    everything a plan does not fix is sampled by ``inner``.
    """

    def __init__(self, inner: BaseSampler, *, lock_url: str | None) -> None:
        self._inner = inner
        self._lock_url = lock_url
        self._plans: dict[int, dict[str, Any]] = {}

    @property
    def inner(self) -> BaseSampler:
        return self._inner

    def _plan(self, study: Study, trial: FrozenTrial) -> dict[str, Any] | None:
        raise NotImplementedError

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial
                                    ) -> dict[str, BaseDistribution]:
        return {}  # whole configs are planned in before_trial

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        with plan_lock(self._lock_url, study.study_name):
            self._inner.before_trial(study, trial)
            if "fixed_params" in trial.system_attrs or trial.params:
                return  # enqueued or retried: its params are already decided
            trial = study._storage.get_trial(trial._trial_id)  # with what inner stored on it
            self._store(study, trial, self._plan(study, trial))

    def _store(self, study: Study, trial: FrozenTrial, plan: dict[str, Any] | None) -> None:
        if plan is None:
            return
        self._plans[trial.number] = plan
        study._storage.set_trial_system_attr(trial._trial_id, PLAN_ATTR, plan)

    def sample_independent(self, study: Study, trial: FrozenTrial, name: str,
                           dist: BaseDistribution) -> Any:
        plan = self._plans.get(trial.number) or trial.system_attrs.get(PLAN_ATTR) or {}
        if name in plan:
            try:
                if dist._contains(dist.to_internal_repr(plan[name])):
                    return plan[name]
            except (ValueError, TypeError):
                pass
        return self._inner.sample_independent(study, trial, name, dist)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._plans.pop(trial.number, None)
        if isinstance(self._inner, optuna.samplers.GridSampler):
            return  # its after_trial only stops an optimize loop; the worker loop stops at budget
        self._inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()


class DistinctSampler(PlanningSampler):
    """An Optuna sampler that never hands a running or already tried config to a new trial.

    Why: with equal seeds, separate processes draw the same random (startup) configs; TPE's
    constant liar sees only trials whose config is already in storage; GPSampler has no liar;
    GridSampler picks among unvisited points without a lock and shuffles its grid by seed; and in
    a finite space every sampler re-proposes finished configs. So each new trial's whole config
    is decided in ``before_trial``, one worker at a time under the storage lock, and stored on
    the trial, where the other workers see it as taken. ``inner`` (Optuna's sampler, unchanged)
    proposes; a proposal equal to a waiting, running, finished or failed trial's config is
    replaced by a seeded random one that is not taken (an untried grid point when the space is
    finite, or with ``grid_only``). A single worker gets ``inner``'s own sequence until ``inner``
    would repeat a config.
    """

    def __init__(self, inner: BaseSampler, space: SearchSpace, *,
                 context: Mapping[str, Any] | None = None, seed: int | None = None,
                 lock_url: str | None = None, grid_only: bool = False,
                 relative: bool = True) -> None:
        super().__init__(inner, lock_url=lock_url)
        self._space = space
        self._context = dict(context or {})
        self._grid_only = grid_only  # swap for grid points only (the grid strategy)
        self._relative = relative  # False: inner samples each param on its own
        self._rng = np.random.default_rng(seed)
        # Another stream than the inner sampler's own random draws (seeded ``seed``), which are
        # what proposed the duplicate in the first place.
        self._random = optuna.samplers.RandomSampler(seed=None if seed is None else seed + 7919)

    def _plan(self, study: Study, trial: FrozenTrial) -> dict[str, Any] | None:
        taken = taken_configs(study, trial.number)
        plan = self._propose(study, trial, use_inner=True)  # inner's relative sampling runs here
        if is_taken(plan, taken):
            plan = self._untaken(study, trial, taken) or plan  # all taken: a repeat is unavoidable
        return plan

    def _propose(self, study: Study, trial: FrozenTrial, *, use_inner: bool) -> dict[str, Any]:
        """A whole config, in the space's order so conditions resolve: with ``use_inner`` the
        inner sampler's relative proposal and its independent draws for the rest (startup
        trials, conditional params), as Optuna's own trial would ask them; else random draws."""
        from optuna.distributions import _get_single_value

        relative: dict[str, Any] = {}
        sampler = self._inner if use_inner else self._random
        if use_inner and self._relative:
            search_space = self._inner.infer_relative_search_space(study, trial)
            if search_space:
                relative = self._inner.sample_relative(study, trial, search_space)
        ctx = {**self._context, **self._space.fixed}
        config: dict[str, Any] = {}
        for p in self._space.params:
            if not p.active(ctx):
                continue
            dist = p.distribution()
            if dist.single():  # Optuna asks no sampler for a one-value distribution
                value = _get_single_value(dist)
            elif p.name in relative:
                value = relative[p.name]
            else:
                value = sampler.sample_independent(study, trial, p.name, dist)
            ctx[p.name] = config[p.name] = value.item() if isinstance(value, np.generic) else value
        return config

    def _untaken(self, study: Study, trial: FrozenTrial,
                 taken: list[dict[str, Any]]) -> dict[str, Any] | None:
        if self._grid_only or not any(p.continuous for p in self._space.params):
            free = [c for c in (self._space.params_of(g, self._context)
                                for g in self._space.grid(self._context))
                    if c is not None and not is_taken(c, taken)]
            return free[int(self._rng.integers(len(free)))] if free else None
        for _ in range(100):  # continuous draws repeat a taken config with probability ~0
            config = self._propose(study, trial, use_inner=False)
            if not is_taken(config, taken):
                return config
        return None

    def reseed_rng(self) -> None:
        super().reseed_rng()
        self._random.reseed_rng()


def taken_configs(study: Study, number: int) -> list[dict[str, Any]]:
    """Configs of the other trials that are waiting in the queue, running (planned or enqueued
    ones included) or finished: repeating one wastes a trial (training runs are seeded, so
    deterministic)."""
    from optuna.trial import TrialState

    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING,
                                                      TrialState.COMPLETE, TrialState.PRUNED,
                                                      TrialState.FAIL)):
        if t.number == number:
            continue
        config = {**t.system_attrs.get("fixed_params", {}), **(t.system_attrs.get(PLAN_ATTR) or {}),
                  **t.params}
        if config:
            out.append(config)
    return out


def is_taken(config: dict[str, Any], taken: list[dict[str, Any]]) -> bool:
    return any(same_config(config, t) for t in taken)
