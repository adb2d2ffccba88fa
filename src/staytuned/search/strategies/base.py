"""The one strategy abstraction: what a search strategy declares, and :func:`build_strategy`,
the registry ``tune``, ``grid``, ``decode tune`` and ``simulate`` all build strategies with."""

from __future__ import annotations

import contextlib
import importlib
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from staytuned.errors import InputError

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler

    from staytuned.results import ScoreMatrix
    from staytuned.search.space import SearchSpace
    from staytuned.search.strategies.adaptive import AdaptiveSettings
    from staytuned.search.strategies.planning import DistinctSampler

# What a strategy needs from past results: nothing, a CBS ranking (a results table or the shipped
# recommendations), or per-dataset scores (a results table).
Needs = Literal["nothing", "ranking", "scores"]

# name -> "module:Class", imported on first use
_REGISTRY: dict[str, str] = {
    "grid": "grid:Grid",
    "random": "random:Random",
    "tpe": "tpe:TPE",
    "gp": "gp:GP",
    "cbs": "cbs:CBS",
    "cbs+tpe": "cbs:CBSThenTPE",
    "cbs-adaptive": "adaptive:CBSAdaptive",
    "zeroshot": "portfolio:ZeroShot",
    "greedy-portfolio": "portfolio:GreedyPortfolio",
    "transfer": "transfer:Transfer",
}
STRATEGIES: tuple[str, ...] = tuple(_REGISTRY)


@dataclass(frozen=True)
class OfflineSource:
    """What CBS knows before the first trial: a ranking and, from a table, the score matrix."""

    ranked: tuple[dict[str, Any], ...]
    matrix: ScoreMatrix | None = None
    provenance: str = ""


@dataclass(frozen=True)
class Strategy:
    """A search strategy, built for one study (or one replayed dataset in ``simulate``).

    A subclass sets ``name``, ``needs`` and ``distinct`` and implements :meth:`sampler`; it may
    enqueue configs before sampling (:meth:`initial_queue`) and try CBS-ranked configs first
    (:attr:`ranked_first`).
    """

    name: ClassVar[str]
    needs: ClassVar[Needs] = "nothing"
    # How concurrent workers on one storage avoid running the same config twice.
    distinct: ClassVar[str] = ""

    space: SearchSpace
    seed: int = 0
    n_trials: int = 10
    context: Mapping[str, Any] = field(default_factory=dict)
    cbs_k: int = 5
    offline: OfflineSource | None = None
    adaptive: AdaptiveSettings | None = None  # cbs-adaptive only; None = its defaults

    def sampler(self, *, storage_url: str | None = None) -> BaseSampler:
        """The Optuna sampler. ``storage_url`` lets samplers that plan whole configs take the
        storage's lock, so concurrent workers plan one at a time."""
        raise NotImplementedError

    def guarded(self, inner: BaseSampler, storage_url: str | None, *,
                grid_only: bool = False) -> DistinctSampler:
        """``inner`` behind the guard that never hands a trial a running or already tried config
        of this strategy's space (:class:`~staytuned.search.strategies.planning.DistinctSampler`)."""
        from staytuned.search.strategies.planning import DistinctSampler

        return DistinctSampler(inner, self.space, context=self.context, seed=self.seed,
                               lock_url=storage_url, grid_only=grid_only)

    def initial_queue(self, *, kind: str = "tune") -> list[dict[str, Any]]:
        """Configs (searched params only) enqueued, in order, before the sampler samples
        (``kind``: the study's, StudySpec.kind; a "grid" study runs every grid point)."""
        return []

    @property
    def ranked_first(self) -> int:
        """How many of the offline CBS ranking's configs are tried before the sampler."""
        return 0

    @property
    def budget(self) -> int:
        """Trials a ``tune`` study of this strategy ends with."""
        return self.n_trials

    def cell_context(self) -> dict[str, Any]:
        """The values conditions are checked against: the cell's context and the fixed values."""
        return {**self.context, **self.space.fixed}

    def _offline(self, *, scores: bool = False) -> OfflineSource:
        if self.offline is None or (scores and self.offline.matrix is None):
            what = "per-dataset scores (a results table)" if scores else "a CBS ranking"
            raise InputError(f"strategy {self.name} needs {what}", field="offline",
                             expected="an OfflineSource from offline_from_table"
                                      + ("" if scores else " or shipped_offline"))
        return self.offline


def check_strategy(name: str) -> str:
    if name not in _REGISTRY:
        raise InputError("unknown strategy", field="strategy", value=name,
                         expected="one of " + ", ".join(STRATEGIES))
    return name


def strategy_class(name: str) -> type[Strategy]:
    module, cls = _REGISTRY[check_strategy(name)].split(":")
    found: type[Strategy] = getattr(importlib.import_module(f"staytuned.search.strategies.{module}"), cls)
    return found


def build_strategy(name: str, *, space: SearchSpace, seed: int = 0, n_trials: int = 10,
                   context: Mapping[str, Any] | None = None, cbs_k: int = 5,
                   offline: OfflineSource | None = None,
                   adaptive: AdaptiveSettings | None = None) -> Strategy:
    """The strategy ``name`` for a study of ``n_trials`` trials over ``space`` in a cell
    (``context``: e.g. its method); ``offline`` feeds the CBS strategies."""
    return strategy_class(name)(space=space, seed=seed, n_trials=n_trials,
                                context=dict(context or {}), cbs_k=cbs_k, offline=offline,
                                adaptive=adaptive)


def make_sampler(name: str, space: SearchSpace, *, seed: int = 0, n_trials: int = 10,
                 context: Mapping[str, Any] | None = None, cbs_k: int = 5,
                 offline: OfflineSource | None = None,
                 storage_url: str | None = None) -> BaseSampler:
    """Shorthand: the sampler of :func:`build_strategy`'s strategy."""
    strategy = build_strategy(name, space=space, seed=seed, n_trials=n_trials, context=context,
                              cbs_k=cbs_k, offline=offline)
    return strategy.sampler(storage_url=storage_url)


def startup_trials(n_trials: int) -> int:
    """Random trials before the TPE/GP model: Optuna's default of 10 would make a 10-trial TPE
    run pure random search, so scale it with the budget."""
    return max(2, min(10, n_trials // 3))


@contextlib.contextmanager
def experimental_ok() -> Iterator[None]:
    """TPE's group/constant_liar are "experimental" in name only: no warning per sampler."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def close(a: Any, b: Any) -> bool:
    """Equal values, numbers up to float noise (16 vs 16.0, 1e-4 vs 0.0001)."""
    if isinstance(a, str) or isinstance(b, str):
        return bool(a == b)
    try:
        import numpy as np

        return bool(np.isclose(float(a), float(b), rtol=1e-6, atol=1e-12))
    except (TypeError, ValueError):
        return bool(a == b)


def same_config(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return bool(a) and set(a) == set(b) and all(close(a[k], b[k]) for k in a)
