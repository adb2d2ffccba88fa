"""Coverage-based Search: rank configs by coverage, evaluate leave-one-out, recommend, plot.

Light package: numpy at import time; pyyaml and matplotlib are imported inside the functions
that need them. Modules: ``ranking`` (normalisation, coverage, the greedy ranking),
``evaluation`` (leave-one-out evaluation and baselines), ``recommendations`` (shipped and
table-derived recommendations), ``plots`` (best-of-top-k plots).

Module names are nouns on purpose: a submodule named like the function it exports
(``cbs/rank.py`` next to ``cbs.rank``) makes ``import staytuned.cbs.rank as m`` and dotted
patch targets resolve to the function instead of the module.
"""

from __future__ import annotations

from staytuned.cbs.evaluation import METHODS, Evaluation, MethodCurve, evaluate
from staytuned.cbs.plots import plot_evaluation
from staytuned.cbs.ranking import (
    Ranking,
    RankStep,
    check_tolerance,
    covers,
    greedy_order,
    normalize,
    rank,
    tiebreak_order,
)
from staytuned.cbs.recommendations import (
    Recommendation,
    RecommendationSet,
    known_models,
    match_model,
    recommend,
    resolve_model,
    shipped_recommendations,
    shipped_table,
)

__all__ = [
    "METHODS",
    "Evaluation",
    "MethodCurve",
    "RankStep",
    "Ranking",
    "Recommendation",
    "RecommendationSet",
    "check_tolerance",
    "covers",
    "evaluate",
    "greedy_order",
    "known_models",
    "match_model",
    "normalize",
    "plot_evaluation",
    "rank",
    "recommend",
    "resolve_model",
    "shipped_recommendations",
    "shipped_table",
    "tiebreak_order",
]
