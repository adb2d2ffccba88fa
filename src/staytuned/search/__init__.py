"""Hyperparameter search on Optuna: strategies, storage, study runners, workers, simulate.

Light at import: the names below resolve lazily, and the submodules import Optuna/numpy when used.
Subpackages: :mod:`.strategies` (one module per strategy) and :mod:`.executors` (local processes, Ray).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from staytuned._lazy import lazy_imports

if TYPE_CHECKING:
    from staytuned.search.records import TrialRecord, TrialStatus, read_records
    from staytuned.search.runner import grid, tune
    from staytuned.search.space import Param, SearchSpace, config_id, load_space, parse_space
    from staytuned.search.study import GridSpec, StudySpec
    from staytuned.search.table import export_results

__all__ = [
    "GridSpec",
    "Param",
    "SearchSpace",
    "StudySpec",
    "TrialRecord",
    "TrialStatus",
    "config_id",
    "export_results",
    "grid",
    "load_space",
    "parse_space",
    "read_records",
    "tune",
]

# The names of the TYPE_CHECKING block, each resolved from its module on first access.
_LAZY, __getattr__, __dir__ = lazy_imports(globals())
