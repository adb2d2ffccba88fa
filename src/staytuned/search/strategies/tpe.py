"""``tpe``: Optuna's TPESampler, with the settings every TPE of staytuned uses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from staytuned.search.strategies.base import Strategy, experimental_ok, startup_trials

if TYPE_CHECKING:
    from optuna.samplers import TPESampler

    from staytuned.search.strategies.planning import DistinctSampler


def tpe_sampler(seed: int, n_startup: int) -> TPESampler:
    """Multivariate TPE, grouped so conditional params get their own models, with constant liar
    so concurrent workers steer away from the configs others are running."""
    import optuna

    with experimental_ok():
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(1, n_startup),
                                          multivariate=True, group=True, constant_liar=True)


class TPE(Strategy):
    name = "tpe"
    distinct = ("each config is planned under the storage lock, so constant liar sees every "
                "running trial's config; a taken one (equal seeds draw equal startup configs) is "
                "swapped for an untried one")

    def sampler(self, *, storage_url: str | None = None) -> DistinctSampler:
        return self.guarded(tpe_sampler(self.seed, startup_trials(self.n_trials)), storage_url)
