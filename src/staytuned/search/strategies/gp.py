"""``gp``: Optuna's GPSampler (Gaussian-process BO) behind a guard against duplicate configs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import optuna

from staytuned.search.strategies.base import Strategy, startup_trials

if TYPE_CHECKING:
    from staytuned.search.strategies.planning import DistinctSampler


class GP(Strategy):
    """Optuna's GPSampler, which never hands a running or already tried config to a new trial.

    Why GP needs the guard even within one command: TPE has ``constant_liar``; GPSampler has none.
    Its q-batch acquisition does account for running trials, but only for those whose params it
    can already see, and in a finite (grid-snapped) space the GP re-proposes finished configs.
    Gaussian-process BO itself stays Optuna's (:class:`DistinctSampler` says how).
    """

    name = "gp"
    distinct = ("each config is planned under the storage lock and a taken one is swapped for an "
                "untried one (GPSampler has no constant liar)")

    def sampler(self, *, storage_url: str | None = None) -> DistinctSampler:
        # Conditional params are sampled independently by GP: expected, not worth a warning.
        gp = optuna.samplers.GPSampler(seed=self.seed, n_startup_trials=startup_trials(self.n_trials),
                                       warn_independent_sampling=False)
        return self.guarded(gp, storage_url)
