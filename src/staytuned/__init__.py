"""staytuned: good LLM hyperparameters in a handful of trials.

The public API is imported lazily so that ``import staytuned`` (and the CBS
path of the CLI) never pulls in torch, transformers or ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from staytuned._lazy import lazy_attributes

if TYPE_CHECKING:
    from staytuned.cbs import Evaluation, Ranking, Recommendation, evaluate, rank, recommend
    from staytuned.errors import InputError, StaytunedError
    from staytuned.results import ColumnSpec, ResultsTable, ScoreMatrix, from_records, load_results

__version__ = "0.1.0"

# name -> module that defines it; resolved on first attribute access.
_LAZY: dict[str, str] = {
    # errors
    "StaytunedError": "staytuned.errors",
    "InputError": "staytuned.errors",
    # results tables and CBS
    "load_results": "staytuned.results",
    "from_records": "staytuned.results",
    "ColumnSpec": "staytuned.results",
    "ResultsTable": "staytuned.results",
    "ScoreMatrix": "staytuned.results",
    "rank": "staytuned.cbs",
    "evaluate": "staytuned.cbs",
    "Ranking": "staytuned.cbs",
    "Evaluation": "staytuned.cbs",
    "recommend": "staytuned.cbs",
    "Recommendation": "staytuned.cbs",
}

__all__ = [
    "ColumnSpec",
    "Evaluation",
    "InputError",
    "Ranking",
    "Recommendation",
    "ResultsTable",
    "ScoreMatrix",
    "StaytunedError",
    "evaluate",
    "from_records",
    "load_results",
    "rank",
    "recommend",
]

__getattr__, __dir__ = lazy_attributes("staytuned", _LAZY, globals())
