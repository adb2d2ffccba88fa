"""``gp``: Optuna's GPSampler (Gaussian-process BO) behind a guard against duplicate configs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import optuna

from staytuned.search.strategies.base import Strategy, startup_trials
from staytuned.search.strategies.planning import DistinctSampler

if TYPE_CHECKING:
    from optuna.samplers import GPSampler

    from staytuned.search.space import SearchSpace


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


class DistinctGPSampler(DistinctSampler):
    """Optuna's GPSampler that never hands a running or already tried config to a new trial.

    Why GP needs it even within one command: TPE has ``constant_liar``; GPSampler has none. Its
    q-batch acquisition does account for running trials, but only for those whose params it can
    already see, and in a finite (grid-snapped) space the GP re-proposes finished configs.
    Gaussian-process BO itself stays Optuna's (:class:`DistinctSampler` says how).
    """

    def __init__(self, gp: GPSampler, space: SearchSpace, *,
                 context: Mapping[str, Any] | None = None, seed: int | None = None,
                 lock_url: str | None = None) -> None:
        super().__init__(gp, space, context=context, seed=seed, lock_url=lock_url)

    @property
    def gp(self) -> GPSampler:
        return self._inner  # type: ignore[return-value]
