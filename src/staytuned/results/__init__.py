"""Results tables (CSV, Parquet, JSON Lines) -> validated long table -> :class:`ScoreMatrix`.

A results table has one row per run: a dataset column, the HPs of the run (``hp_<name>``
columns, other role-less columns, one JSON column, or just a config-id column), a score, and
optional status / seed / model / method / train_size / metric / split / group columns.
The column names default to the canonical table of docs/CONTRACTS.md (``staytuned results
export``) and are configurable with :class:`ColumnSpec`.

Light package: numpy at import time only; pandas/pyarrow are imported inside the readers.

Public API::

    table = load_results("runs.csv", columns=ColumnSpec(score="LLMaaJ-AC", dataset="Dataset"))
    table = table.slice(model="mistral-7b", method="lora", train_size=1000)
    matrix = table.score_matrix(direction="max", agg="mean")     # configs x datasets
    choose, score = table.paired_matrices("Dev", "Test")          # X-Dev chooses, X-Test scores

:class:`ScoreMatrix` is also what the search strategies build directly with
:meth:`ScoreMatrix.from_dense` and hand to :func:`staytuned.cbs.rank`.

Modules: ``columns`` (column roles, cell values, directions), ``read`` (files and rows ->
table), ``table`` (:class:`ResultsTable`), ``matrix`` (:class:`ScoreMatrix`), ``order``
(natural order of ids).
"""

from __future__ import annotations

from staytuned.results.columns import (
    DIRECTIONS,
    ColumnSpec,
    check_direction,
    infer_direction,
    parse_assignment,
    parse_value,
)
from staytuned.results.matrix import ScoreMatrix
from staytuned.results.order import natural_key, natural_rank
from staytuned.results.read import from_records, load_results, read_columns
from staytuned.results.table import AGGREGATIONS, ResultsTable, loose_key, nearest_size

__all__ = [
    "AGGREGATIONS",
    "DIRECTIONS",
    "ColumnSpec",
    "ResultsTable",
    "ScoreMatrix",
    "check_direction",
    "from_records",
    "infer_direction",
    "load_results",
    "loose_key",
    "natural_key",
    "natural_rank",
    "nearest_size",
    "parse_assignment",
    "parse_value",
    "read_columns",
]
