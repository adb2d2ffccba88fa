"""``grid``: every grid point of the space, in the space's grid order or by Optuna's GridSampler."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from staytuned.search.strategies.base import Strategy

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler
    from optuna.study import Study


class Grid(Strategy):
    """Optuna's GridSampler when the grid is a plain product in this cell; else (conditions on
    searched params, ``zip``, ``half_fraction``, ``points``) the grid points enqueued in order,
    since GridSampler only knows products. A ``grid`` study always enqueues its points."""

    name = "grid"
    distinct = ("enqueued points are claimed atomically from the storage; GridSampler's point is "
                "chosen under the storage lock, and a taken one (another seed shuffles the grid "
                "otherwise) is swapped for an untried one")

    @property
    def cartesian(self) -> bool:
        """True when the grid is a plain product (conditions depend on axes/fixed values only)."""
        sp = self.space
        if sp.zip or sp.half_fraction or sp.points:
            return False
        searched = set(sp.names)
        return all(not any(name in searched for name, _ in p.when) for p in sp.params)

    def sampler(self, *, storage_url: str | None = None) -> BaseSampler:
        import optuna

        if self.cartesian:
            ctx = self.cell_context()
            grid = {p.name: p.grid_values() for p in self.space.params if p.active(ctx)}
            return self.guarded(optuna.samplers.GridSampler(grid, seed=self.seed), storage_url,
                                grid_only=True)
        return optuna.samplers.RandomSampler(seed=self.seed)  # unused: the points are enqueued

    def initial_queue(self, *, kind: str = "tune") -> list[dict[str, Any]]:
        if kind == "grid" or not self.cartesian:
            return self.space.grid(self.context)[: self.n_trials]
        return []

    @property
    def budget(self) -> int:
        return min(self.n_trials, self.space.size(self.context))


def grid_done(study: Study, sampler: BaseSampler) -> bool:
    """Whether every point of a GridSampler's grid (``sampler``'s, or the one it wraps) has been
    handed to a trial."""
    from optuna.trial import TrialState

    grid_sampler: Any = getattr(sampler, "inner", sampler)
    n_grid = len(grid_sampler._all_grids)  # GridSampler's own (private) grid
    seen = {t.system_attrs.get("grid_id") for t in study.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL,
                                TrialState.RUNNING))}
    return len(seen - {None}) >= n_grid
