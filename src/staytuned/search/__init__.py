"""Hyperparameter search on Optuna: strategies, storage, study runners, workers, simulate.

Light at import: the names below resolve lazily, and the submodules import Optuna/numpy when used.
Subpackages: :mod:`.strategies` (one module per strategy) and :mod:`.executors` (local processes, Ray).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from staytuned._lazy import lazy_attributes

if TYPE_CHECKING:
    from staytuned.search.records import TrialRecord, TrialStatus, read_records
    from staytuned.search.runner import grid, tune
    from staytuned.search.space import Param, SearchSpace, config_id, load_space, parse_space
    from staytuned.search.study import GridSpec, StudySpec
    from staytuned.search.table import export_results

_LAZY: dict[str, str] = {
    "Param": "staytuned.search.space",
    "SearchSpace": "staytuned.search.space",
    "config_id": "staytuned.search.space",
    "load_space": "staytuned.search.space",
    "parse_space": "staytuned.search.space",
    "TrialRecord": "staytuned.search.records",
    "TrialStatus": "staytuned.search.records",
    "read_records": "staytuned.search.records",
    "StudySpec": "staytuned.search.study",
    "GridSpec": "staytuned.search.study",
    "tune": "staytuned.search.runner",
    "grid": "staytuned.search.runner",
    "export_results": "staytuned.search.table",
}

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

__getattr__, __dir__ = lazy_attributes("staytuned.search", _LAZY, globals())
