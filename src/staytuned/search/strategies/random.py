"""``random``: Optuna's RandomSampler, behind the duplicate guard."""

from __future__ import annotations

from typing import TYPE_CHECKING

from staytuned.search.strategies.base import Strategy

if TYPE_CHECKING:
    from staytuned.search.strategies.planning import DistinctSampler


class Random(Strategy):
    name = "random"
    distinct = ("each config is drawn under the storage lock and a taken one (equal seeds draw "
                "equal configs) is swapped for an untried one")

    def sampler(self, *, storage_url: str | None = None) -> DistinctSampler:
        import optuna

        return self.guarded(optuna.samplers.RandomSampler(seed=self.seed), storage_url)
