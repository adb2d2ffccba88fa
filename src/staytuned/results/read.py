"""Reading results tables (CSV, Parquet, JSON Lines, in-memory rows) into a :class:`ResultsTable`.

Validation and inference live here: which columns hold HPs, which rows failed, how configs
are identified. pandas/pyarrow are imported inside the readers, never at import time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from staytuned._util.io import read_jsonl
from staytuned.errors import InputError
from staytuned.results.columns import ColumnSpec, parse_value
from staytuned.results.table import ResultsTable

__all__ = ["from_records", "load_results", "read_columns"]

_OK_STATUS = {"ok", "success", "succeeded", "complete", "completed", "done", "finished"}
# A pruned trial stopped early because it looked bad: its score is partial, so it counts as failed.
_FAILED_STATUS = {"failed", "fail", "failure", "error", "errored", "oom", "pruned", "crashed"}


def load_results(path: str | Path, columns: ColumnSpec | None = None) -> ResultsTable:
    """Read and validate a results table (CSV, Parquet, JSON Lines by extension).

    Raises :class:`InputError` naming file, row and column for: an unreadable or empty file,
    missing columns, non-numeric scores, unknown status values, malformed JSON HP cells.
    """
    spec = columns or ColumnSpec()
    p = Path(path)
    cols, data, rowno = read_columns(p)
    return _build(str(p), cols, data, rowno, spec)


def from_records(records: Sequence[Mapping[str, Any]], columns: ColumnSpec | None = None,
                 source: str = "<records>") -> ResultsTable:
    """Same as :func:`load_results` for in-memory rows (list of dicts)."""
    cols, data = _columns_of(records)
    return _build(source, cols, data, lambda i: i + 1, columns or ColumnSpec())


def _build(source: str, cols: list[str], data: dict[str, list[Any]], rowno: Callable[[int], int],
           spec: ColumnSpec) -> ResultsTable:
    n_rows = len(next(iter(data.values()))) if data else 0
    if not cols or n_rows == 0:
        raise InputError("the table is empty", file=source, expected="a header and at least one row of runs")
    present = set(cols)
    explicit = spec.explicit()
    role_col: dict[str, str] = {}
    for role, col in spec.roles().items():
        if col in present:
            role_col[role] = col
        elif role in ("dataset", "score") or role in explicit:
            raise InputError("missing column", file=source, column=col,
                             expected=f"a {role.replace('_', ' ')} column; columns are {cols}")
    if spec.hps:
        for c in spec.hps:
            if c not in present:
                raise InputError("missing HP column", file=source, column=c, expected=f"one of {cols}")

    def text_col(role: str) -> np.ndarray | None:
        c = role_col.get(role)
        return None if c is None else np.array([_text(v) for v in data[c]], dtype=object)

    dataset = text_col("dataset")
    assert dataset is not None
    for i, d in enumerate(dataset.tolist()):
        if d is None:
            raise InputError("empty dataset name", file=source, row=rowno(i), column=role_col["dataset"],
                             expected="a dataset name in every row")
    score = _to_float(data[role_col["score"]], file=source, column=role_col["score"], rowno=rowno, what="score")
    test_score = None
    if "test_score" in role_col and role_col["test_score"] != role_col["score"]:
        test_score = _to_float(data[role_col["test_score"]], file=source, column=role_col["test_score"],
                               rowno=rowno, what="test score")
        if np.isnan(test_score).all() and "test_score" not in explicit:
            test_score = None  # canonical column present but never filled
    failed = np.isnan(score)
    if "status" in role_col:
        for i, v in enumerate(data[role_col["status"]]):
            s = _text(v)
            if s is None or s.lower() in _OK_STATUS:
                continue
            if s.lower() in _FAILED_STATUS:
                failed[i] = True
                continue
            raise InputError("unknown status", file=source, row=rowno(i), column=role_col["status"], value=s,
                             expected="ok or failed (also: success, completed, error, oom, pruned)")
    score = np.where(failed, np.nan, score)
    notes: list[str] = []

    # -- configs -----------------------------------------------------------------------------
    hp_json = role_col.get("hp_json")
    used = set(role_col.values()) | set(spec.ignore)
    if spec.hps is not None:
        hp_cols = list(spec.hps)
    elif any(c.startswith("hp_") for c in cols):
        hp_cols = [c for c in cols if c.startswith("hp_")]
    else:
        hp_cols = [c for c in cols if c not in used]
        rows_per_ds = max(np.unique(dataset, return_counts=True)[1])
        measured = []
        for c in list(hp_cols):
            vals = [v for v in data[c] if not _blank(v)]
            numeric = all(isinstance(parse_value(v), int | float) for v in vals)
            if numeric and len(set(map(str, vals))) > rows_per_ds:
                measured.append(c)
        hp_cols = [c for c in hp_cols if c not in measured]
        if measured:
            notes.append(f"numeric columns treated as measurements, not HPs: {', '.join(measured)} "
                         f"(choose HP columns explicitly with `ColumnSpec.hps`)")
        if hp_cols and "config" not in role_col:
            notes.append(f"HP columns: {', '.join(hp_cols)}")
    hp_dicts: list[dict[str, Any]] = [{} for _ in range(n_rows)]
    if hp_json is not None:
        for i, v in enumerate(data[hp_json]):
            if _blank(v):
                continue
            obj = v
            if isinstance(v, str):
                try:
                    obj = json.loads(v)
                except json.JSONDecodeError as exc:
                    raise InputError(f"malformed JSON ({exc.msg})", file=source, row=rowno(i), column=hp_json,
                                     value=v[:60], expected='a JSON object such as {"learning_rate": 1e-4}') from None
            if not isinstance(obj, dict):
                raise InputError("HP cell is not a JSON object", file=source, row=rowno(i), column=hp_json,
                                 value=v if not isinstance(v, str) else v[:60],
                                 expected='a JSON object such as {"learning_rate": 1e-4}')
            hp_dicts[i].update(obj)
    for c in hp_cols:
        key = c.removeprefix("hp_")
        for i, v in enumerate(data[c]):
            if not _blank(v):
                hp_dicts[i][key] = parse_value(v)
    config_col = role_col.get("config")
    if config_col is not None:
        config = np.array([_text(v) for v in data[config_col]], dtype=object)
        for i, c in enumerate(config.tolist()):
            if c is None:
                raise InputError("empty config id", file=source, row=rowno(i), column=config_col,
                                 expected="a config id in every row")
    else:
        if not hp_cols and hp_json is None:
            raise InputError("no column identifies the configs", file=source,
                             expected="a config-id column (`ColumnSpec.config`), HP columns (hp_* or "
                                      "`ColumnSpec.hps`) or a JSON HP column (`ColumnSpec.hp_json`); "
                                      f"columns are {cols}")
        keys: dict[str, str] = {}
        ids = []
        for h in hp_dicts:
            k = json.dumps(h, sort_keys=True, default=str)
            if k not in keys:
                keys[k] = f"c{len(keys) + 1}"
            ids.append(keys[k])
        config = np.array(ids, dtype=object)
    hps: dict[str, dict[str, Any]] = {}
    for c, h in zip(config.tolist(), hp_dicts, strict=True):
        hps.setdefault(c, h)
    n_ds = len(set(dataset.tolist()))
    if config_col is None and n_ds > 1 and len(hps) == n_rows:
        raise InputError("every row is a different config, so no config was run on two datasets", file=source,
                         expected=f"HP columns that identify configs (HP columns used: {hp_cols or hp_json}); "
                                  "choose them with `ColumnSpec.hps` or give a `ColumnSpec.config`")

    def axis(role: str) -> np.ndarray | None:
        col = text_col(role)
        if col is None or all(v is None for v in col.tolist()):
            return None
        return col

    return ResultsTable(
        source=source,
        dataset=dataset,
        config=config,
        score=score,
        failed=failed,
        hps=hps,
        test_score=test_score,
        seed=axis("seed"),
        model=axis("model"),
        method=axis("method"),
        train_size=axis("train_size"),
        metric=axis("metric"),
        split=axis("split"),
        group=axis("group"),
        rows=np.array([rowno(i) for i in range(n_rows)]),
        hp_columns=tuple(hp_cols),
        notes=tuple(notes),
    )


def read_columns(path: Path) -> tuple[list[str], dict[str, list[Any]], Callable[[int], int]]:
    """Read CSV/Parquet/JSONL into (column names, column -> python values, row-number mapper)."""
    label = str(path)
    if not path.exists():
        raise InputError("file not found", file=label, expected="a CSV, Parquet or JSON Lines results table")
    if path.is_dir():
        raise InputError("is a directory", file=label, expected="a results table file")
    compressed = path.suffix.lower() in (".gz", ".bz2", ".zst")
    suffix = "".join(path.suffixes[-2:]).lower() if compressed else path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            data = pq.read_table(path).to_pydict()
            return list(data), data, lambda i: i + 1
        if suffix in (".jsonl", ".ndjson", ".json", ".jsonl.gz"):
            return _read_jsonl(path)
        import pandas as pd

        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except InputError:
        raise
    except UnicodeDecodeError as exc:
        raise InputError(f"cannot decode the file ({exc.reason})", file=label, expected="UTF-8 text") from None
    except Exception as exc:
        raise InputError(f"cannot read the table: {exc}".splitlines()[0], file=label,
                         expected="a readable CSV (header row first), Parquet or JSON Lines file") from None
    cols = [str(c) for c in frame.columns]
    data = {c: frame[c].tolist() for c in cols}
    # CSV line numbers as a spreadsheet shows them: the header is row 1.
    return cols, data, lambda i: i + 2


def _read_jsonl(path: Path) -> tuple[list[str], dict[str, list[Any]], Callable[[int], int]]:
    numbered = read_jsonl(path)
    lines = [n for n, _ in numbered]
    cols, data = _columns_of([obj for _, obj in numbered])
    return cols, data, lambda i: lines[i]


def _columns_of(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], dict[str, list[Any]]]:
    """Column names in order of first appearance, and each column's values (None where absent)."""
    cols = list(dict.fromkeys(c for r in rows for c in r))
    return cols, {c: [r.get(c) for r in rows] for c in cols}


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, str) and v.strip() == "") or (isinstance(v, float) and math.isnan(v))


def _to_float(values: list[Any], *, file: str, column: str, rowno: Callable[[int], int], what: str) -> np.ndarray:
    out = np.empty(len(values), dtype=float)
    for i, v in enumerate(values):
        if _blank(v):
            out[i] = np.nan
            continue
        if isinstance(v, bool):
            raise InputError(f"non-numeric {what}", file=file, row=rowno(i), column=column, value=v,
                             expected="a number")
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            raise InputError(f"non-numeric {what}", file=file, row=rowno(i), column=column, value=v,
                             expected="a number (empty or NaN for a failed run)") from None
    return out


def _text(v: Any) -> str | None:
    if _blank(v):
        return None
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()
