"""``gp``: Optuna's GPSampler (Gaussian-process BO) behind a guard against duplicate configs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna

from staytuned.search.strategies.base import Strategy, startup_trials
from staytuned.search.strategies.planning import (
    PlanningSampler,
    is_taken,
    taken_configs,
)

if TYPE_CHECKING:
    from optuna.samplers import GPSampler
    from optuna.study import Study
    from optuna.trial import FrozenTrial

    from staytuned.space import SearchSpace


class GP(Strategy):
    name = "gp"
    distinct = ("each config is planned under the storage lock and a taken one is swapped for an "
                "untried one (GPSampler has no constant liar)")

    def sampler(self, *, storage_url: str | None = None) -> DistinctGPSampler:
        # Conditional params are sampled independently by GP: expected, not worth a warning.
        gp = optuna.samplers.GPSampler(seed=self.seed, n_startup_trials=startup_trials(self.n_trials),
                                       warn_independent_sampling=False)
        return DistinctGPSampler(gp, self.space, context=self.context, seed=self.seed,
                                 lock_url=storage_url)


class DistinctGPSampler(PlanningSampler):
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

    def __init__(self, gp: GPSampler, space: SearchSpace, *,
                 context: Mapping[str, Any] | None = None, seed: int | None = None,
                 lock_url: str | None = None) -> None:
        super().__init__(gp, lock_url=lock_url, lock_name="gp-plan")
        self._gp = gp
        self._space = space
        self._context = dict(context or {})
        self._rng = np.random.default_rng(seed)
        # Another stream than the GP's own random startup sampler (seeded ``seed``), which is
        # what proposed the duplicate in the first place.
        self._random = optuna.samplers.RandomSampler(seed=None if seed is None else seed + 7919)

    @property
    def gp(self) -> GPSampler:
        return self._gp

    def _plan(self, study: Study, trial: FrozenTrial) -> dict[str, Any] | None:
        taken = taken_configs(study, trial.number)
        plan = self._propose(study, trial, use_gp=True)  # the GP's relative sampling runs here
        if is_taken(plan, taken):
            plan = self._untaken(study, trial, taken) or plan  # all taken: a repeat is unavoidable
        return plan

    def _propose(self, study: Study, trial: FrozenTrial, *, use_gp: bool) -> dict[str, Any]:
        """A whole config, in the space's order so conditions resolve: with ``use_gp`` the GP's
        relative proposal and its independent draws for the rest (startup trials, conditional
        params); else random draws."""
        relative: dict[str, Any] = {}
        independent = self._gp.sample_independent if use_gp else self._random.sample_independent
        if use_gp:
            search_space = self._gp.infer_relative_search_space(study, trial)
            if search_space:
                relative = self._gp.sample_relative(study, trial, search_space)
        ctx = {**self._context, **self._space.fixed}
        config: dict[str, Any] = {}
        for p in self._space.params:
            if not p.active(ctx):
                continue
            value = relative[p.name] if p.name in relative else independent(
                study, trial, p.name, p.distribution())
            ctx[p.name] = config[p.name] = value.item() if isinstance(value, np.generic) else value
        return config

    def _untaken(self, study: Study, trial: FrozenTrial,
                 taken: list[dict[str, Any]]) -> dict[str, Any] | None:
        if not any(p.continuous for p in self._space.params):
            free = [c for c in (self._space.params_of(g, self._context)
                                for g in self._space.grid(self._context))
                    if c is not None and not is_taken(c, taken)]
            return free[int(self._rng.integers(len(free)))] if free else None
        for _ in range(100):  # continuous draws repeat a taken config with probability ~0
            config = self._propose(study, trial, use_gp=False)
            if not is_taken(config, taken):
                return config
        return None

    def reseed_rng(self) -> None:
        super().reseed_rng()
        self._random.reseed_rng()
