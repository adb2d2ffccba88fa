"""Coverage-based Search: rank configs by coverage, evaluate leave-one-out, recommend, plot.

Light package: numpy at import time; pyyaml and matplotlib are imported inside the functions
that need them. Modules: ``ranking`` (normalisation, coverage, the greedy ranking),
``portfolios`` (zero-shot, greedy-portfolio and best-average rankers behind ``rank_by``),
``evaluation`` (leave-one-out evaluation and baselines), ``tolerance`` (``--tol auto``),
``recommendations`` (shipped and table-derived recommendations), ``plots`` (best-of-top-k
plots).

Module names are nouns on purpose: a submodule named like the function it exports
(``cbs/rank.py`` next to ``cbs.rank``) makes ``import staytuned.cbs.rank as m`` and dotted
patch targets resolve to the function instead of the module.
"""

from __future__ import annotations

from staytuned.cbs.evaluation import METHODS, Evaluation, MethodCurve, evaluate
from staytuned.cbs.plots import plot_evaluation
from staytuned.cbs.portfolios import RANKERS, check_ranker, rank_by
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
from staytuned.cbs.tolerance import TOL_CANDIDATES, TolChoice, choose_tolerance, parse_tol

__all__ = [
    "METHODS",
    "RANKERS",
    "TOL_CANDIDATES",
    "Evaluation",
    "MethodCurve",
    "RankStep",
    "Ranking",
    "Recommendation",
    "RecommendationSet",
    "TolChoice",
    "check_ranker",
    "check_tolerance",
    "choose_tolerance",
    "covers",
    "evaluate",
    "greedy_order",
    "known_models",
    "match_model",
    "normalize",
    "parse_tol",
    "plot_evaluation",
    "rank",
    "rank_by",
    "recommend",
    "resolve_model",
    "shipped_recommendations",
    "shipped_table",
    "tiebreak_order",
]
