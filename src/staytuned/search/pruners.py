"""Optional pruning of trials from their per-epoch validation scores."""

from __future__ import annotations

from typing import TYPE_CHECKING

from staytuned.errors import InputError

if TYPE_CHECKING:
    from optuna.pruners import BasePruner

PRUNERS = ("none", "median", "halving", "hyperband")


def make_pruner(name: str | None, *, max_epochs: float = 3) -> BasePruner:
    """The Optuna pruner ``name`` (None = no pruning)."""
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
