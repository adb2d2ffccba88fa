"""Search strategies: one module each, behind one :class:`Strategy` built by :func:`build_strategy`.

================ ============================================================================
``grid``         every grid point of the space (:mod:`.grid`)
``random``       RandomSampler (:mod:`.random`)
``tpe``          TPESampler: multivariate, grouped for conditionals, constant liar (:mod:`.tpe`)
``gp``           GPSampler (:mod:`.gp`)
``cbs``          the CBS-ranked configs enqueued in order, then RandomSampler (:mod:`.cbs`)
``cbs+tpe``      CBS's top ``cbs_k`` enqueued first, then TPE, which sees their results (:mod:`.cbs`)
``zeroshot``     the offline table's zero-shot portfolio by rank (``greedy-portfolio``: greedy
                 portfolio by normalized score) enqueued in order, then RandomSampler
                 (:mod:`.portfolio`)
``cbs-adaptive`` after each result, the offline datasets that agree with it weigh more and the
                 next config maximizes their weighted coverage (:mod:`.adaptive`)
``transfer``     offline datasets as an ensemble of surrogates reweighted by the new task's results:
                 a weighted rank portfolio (+ coverage) first, then calibrated expected improvement
                 (:mod:`.transfer`)
================ ============================================================================

No two trials of a study run the same config, whatever the number of workers, processes or
machines on its storage and their seeds: each trial's whole config is decided under the study's
storage lock, and a sampler's proposal that is already taken is swapped for an untried one
(:mod:`.planning`; each strategy states how in ``Strategy.distinct``).
"""

from __future__ import annotations

from staytuned.search.strategies.base import (
    STRATEGIES,
    Needs,
    OfflineSource,
    Strategy,
    build_strategy,
    check_strategy,
    make_sampler,
    startup_trials,
    strategy_class,
)
from staytuned.search.strategies.cbs import (
    cbs_queue,
    offline_for,
    offline_from_table,
    project,
    shipped_offline,
)

# Strategies that start from past results (a results table or the shipped recommendations).
CBS_STRATEGIES: tuple[str, ...] = tuple(s for s in STRATEGIES if strategy_class(s).needs != "nothing")

__all__ = [
    "CBS_STRATEGIES",
    "STRATEGIES",
    "Needs",
    "OfflineSource",
    "Strategy",
    "build_strategy",
    "cbs_queue",
    "check_strategy",
    "make_sampler",
    "offline_for",
    "offline_from_table",
    "project",
    "shipped_offline",
    "startup_trials",
    "strategy_class",
]
