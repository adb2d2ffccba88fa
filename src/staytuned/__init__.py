"""staytuned: good LLM hyperparameters in a handful of trials.

The public API is imported lazily so that ``import staytuned`` (and the CBS
path of the CLI) never pulls in torch, transformers or ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from staytuned._lazy import lazy_imports

if TYPE_CHECKING:
    from staytuned.cbs import Evaluation, Ranking, Recommendation, evaluate, rank, recommend
    from staytuned.errors import InputError, StaytunedError
    from staytuned.results import ColumnSpec, ResultsTable, ScoreMatrix, from_records, load_results

__version__ = "0.1.0"

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

# The names of the TYPE_CHECKING block, each resolved from its module on first access.
_LAZY, __getattr__, __dir__ = lazy_imports(globals())
