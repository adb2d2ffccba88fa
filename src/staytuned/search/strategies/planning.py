"""Samplers that decide a trial's whole config up front, one worker at a time (gp, cbs-adaptive).

Why: a plan stored on the trial (system attr ``PLAN_ATTR``) is visible to every worker, so
concurrent workers, planning one at a time under the storage lock, never pick a config that
another worker is running.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import optuna

from staytuned.search.strategies.base import same_config

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.samplers import BaseSampler
    from optuna.study import Study
    from optuna.trial import FrozenTrial, TrialState

PLAN_ATTR = "staytuned:planned_params"


class PlanningSampler(optuna.samplers.BaseSampler):
    """Base of samplers that decide a trial's whole config in ``before_trial``.

    Subclasses implement ``_plan`` (return a config, or None to let ``inner`` sample);
    everything a plan does not fix is sampled by ``inner``.
    """

    def __init__(self, inner: BaseSampler, *, lock_url: str | None, lock_name: str) -> None:
        self._inner = inner
        self._lock_url = lock_url
        self._lock_name = lock_name
        self._plans: dict[int, dict[str, Any]] = {}

    def _plan(self, study: Study, trial: FrozenTrial) -> dict[str, Any] | None:
        raise NotImplementedError

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial
                                    ) -> dict[str, BaseDistribution]:
        return {}  # whole configs are planned in before_trial

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        from staytuned.search.storage import enqueue_lock

        self._inner.before_trial(study, trial)
        if "fixed_params" in trial.system_attrs or trial.params:
            return  # enqueued or retried: its params are already decided
        if self._lock_url is None:
            self._store(study, trial, self._plan(study, trial))
            return
        with enqueue_lock(self._lock_url, f"{study.study_name}:{self._lock_name}"):
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
        self._inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()


def taken_configs(study: Study, number: int) -> list[dict[str, Any]]:
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


def is_taken(config: dict[str, Any], taken: list[dict[str, Any]]) -> bool:
    return any(same_config(config, t) for t in taken)
