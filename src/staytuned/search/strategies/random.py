"""``random``: Optuna's RandomSampler."""

from __future__ import annotations

from typing import TYPE_CHECKING

from staytuned.search.strategies.base import Strategy

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler


class Random(Strategy):
    name = "random"
    distinct = "each worker samples with its own seed (seed + worker index)"

    def sampler(self, *, storage_url: str | None = None) -> BaseSampler:
        import optuna

        return optuna.samplers.RandomSampler(seed=self.seed)
