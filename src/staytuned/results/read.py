"""Reading results tables (CSV, Parquet, JSON Lines, in-memory rows) into a :class:`ResultsTable`.

Validation and inference live here: which columns hold HPs, which rows failed, how configs
are identified. pandas/pyarrow are imported inside the readers, never at import time.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from staytuned._util.io import read_jsonl
from staytuned.errors import InputError
from staytuned.results.columns import ColumnSpec, parse_value
from staytuned.results.table import ResultsTable, remember_codes

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
    fast = _read_csv_fast(p, floats={c for c in (spec.score, spec.test_score) if c is not None})
    if fast is not None:
        cols, data, rows = fast
        return _build(str(p), cols, data, rows, spec)
    cols, lists, rowno = read_columns(p)
    n_rows = len(next(iter(lists.values()))) if lists else 0
    return _build(str(p), cols, {c: _Column.of(v) for c, v in lists.items()},
                  np.array([rowno(i) for i in range(n_rows)], dtype=np.int64), spec)


def from_records(records: Sequence[Mapping[str, Any]], columns: ColumnSpec | None = None,
                 source: str = "<records>") -> ResultsTable:
    """Same as :func:`load_results` for in-memory rows (list of dicts)."""
    cols, data = _columns_of(records)
    return _build(source, cols, {c: _Column.of(v) for c, v in data.items()},
                  np.arange(1, len(records) + 1, dtype=np.int64), columns or ColumnSpec())


class _Column:
    """A column as its distinct cells and one code per row: row i holds ``values[codes[i]]``.

    Why: a long results table repeats each dataset, config and HP value thousands of times, so
    every per-cell rule (parsing, validation, config identity) runs once per distinct cell.
    """

    __slots__ = ("codes", "values")

    def __init__(self, codes: np.ndarray, values: list[Any]) -> None:
        self.codes = codes
        self.values = values

    @classmethod
    def of(cls, cells: Sequence[Any]) -> _Column:
        """Factorize Python cells; equal cells of different types (1, 1.0, True) stay apart."""
        index: dict[Any, int] = {}
        try:
            codes = [index.setdefault((v.__class__, v), len(index)) for v in cells]
        except TypeError:  # unhashable cells (lists, dicts): one code per row
            return cls(np.arange(len(cells), dtype=np.int64), list(cells))
        return cls(np.array(codes, dtype=np.int64), [v for _, v in index])

    def __len__(self) -> int:
        return len(self.codes)

    def map(self, fn: Callable[[Any], Any]) -> list[Any]:
        """``fn`` of each distinct cell, in ``values`` order."""
        return [fn(v) for v in self.values]

    def per_row(self, mapped: list[Any]) -> np.ndarray:
        """An object array holding ``mapped[codes[i]]`` for row i."""
        arr = np.empty(len(mapped), dtype=object)
        arr[:] = mapped
        out: np.ndarray = arr[self.codes]
        return out

    def first_row(self, flags: Sequence[bool]) -> int | None:
        """The first row whose distinct cell is flagged, or None."""
        hit = np.asarray(flags, dtype=bool)
        if not hit.any():
            return None
        rows = np.flatnonzero(hit[self.codes])
        return int(rows[0]) if len(rows) else None


def _read_csv_fast(path: Path, floats: set[str]) -> tuple[list[str], dict[str, _Column | np.ndarray],
                                                           np.ndarray] | None:
    """A plain CSV read by pyarrow: every column as text, factorized, and the ``floats`` (score)
    columns parsed as numbers. None for anything unusual (cells after a blank, quoted, duplicate
    or blank header names, compression, a ragged row, a cell the fast parsers reject ...): the
    pandas reader then reads the file with the exact rules and messages of
    :func:`read_columns`."""
    if path.suffix.lower() != ".csv" or not path.is_file():
        return None
    try:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        text = pa.dictionary(pa.int32(), pa.string())
        with path.open("rb") as fh:
            header = fh.readline().decode("utf-8-sig").rstrip("\r\n").split(",")
        if ('"' in "".join(header) or len(set(header)) != len(header) or "" in header
                or any(h[:1] in (" ", "\t") for h in header)):
            return None
        # Text columns straight into dictionaries: the distinct cells and a code per row; one
        # block per core, parsed in parallel (their dictionaries are merged below).
        # Memory-mapped input and malloc's pool: fresh memory is what a 1M-row table costs most
        # on small VMs (the default mimalloc pool faults in transparent huge pages there,
        # several times slower).
        block = max(1 << 22, -(-path.stat().st_size // (os.cpu_count() or 1)) + 1)
        table = pacsv.read_csv(pa.memory_map(str(path)),
                               read_options=pacsv.ReadOptions(block_size=block),
                               convert_options=pacsv.ConvertOptions(
                                   column_types={c: (pa.float64() if c in floats else text) for c in header},
                                   null_values=[""], strings_can_be_null=False,
                                   quoted_strings_can_be_null=False),
                               memory_pool=pa.system_memory_pool())
    except Exception:  # an empty file, a ragged row, a cell the parsers reject ...
        return None
    if table.column_names != header:
        return None
    data: dict[str, _Column | np.ndarray] = {}
    for c in header:
        chunks = table.column(c).chunks
        if c in floats:
            data[c] = _arrow_floats(chunks)
        else:
            col = _dictionary_column(chunks)
            # pandas reads with skipinitialspace (", x" is "x", and `, "a,b"` one quoted cell):
            # a cell starting with blanks means the file relies on it, so pandas reads it.
            if any(v[:1] in (" ", "\t") for v in col.values):
                return None
            data[c] = col
    # CSV line numbers as a spreadsheet shows them: the header is row 1.
    return list(header), data, np.arange(2, table.num_rows + 2, dtype=np.int64)


# pyarrow's own numpy conversions import pandas (a second) through its pandas shim: read the
# buffers directly instead.
def _arrow_values(arr: Any, dtype: type[np.generic]) -> np.ndarray:
    """The value buffer of a primitive arrow array as numpy (undefined where null)."""
    out: np.ndarray = np.frombuffer(arr.buffers()[1], dtype=dtype)[arr.offset: arr.offset + len(arr)]
    return out


def _dictionary_column(chunks: list[Any]) -> _Column:
    """Arrow dictionary chunks (each with its own dictionary) as one :class:`_Column`."""
    if len(chunks) == 1:
        return _Column(_arrow_values(chunks[0].indices, np.int32), chunks[0].dictionary.to_pylist())
    index: dict[str, int] = {}
    codes = np.empty(sum(len(ch) for ch in chunks), dtype=np.int32)
    at = 0
    for ch in chunks:
        local = np.array([index.setdefault(v, len(index)) for v in ch.dictionary.to_pylist()], dtype=np.int32)
        if len(ch):
            np.take(local, _arrow_values(ch.indices, np.int32), out=codes[at: at + len(ch)])
        at += len(ch)
    return _Column(codes, list(index))


def _arrow_floats(chunks: list[Any]) -> np.ndarray:
    """float64 arrow chunks as one numpy array (copied once), NaN where null (an empty cell)."""
    out = np.empty(sum(len(ch) for ch in chunks), dtype=np.float64)
    at = 0
    for ch in chunks:
        part = out[at: at + len(ch)]
        part[:] = _arrow_values(ch, np.float64)
        if ch.null_count:
            bits = np.frombuffer(ch.buffers()[0], dtype=np.uint8)
            valid = np.unpackbits(bits, bitorder="little")[ch.offset: ch.offset + len(ch)].astype(bool)
            part[~valid] = np.nan
        at += len(ch)
    return out


def _build(source: str, cols: list[str], data: Mapping[str, _Column | np.ndarray], rows: np.ndarray,
           spec: ColumnSpec) -> ResultsTable:
    n_rows = len(rows)
    if not cols or n_rows == 0:
        raise InputError("the table is empty", file=source, expected="a header and at least one row of runs")

    def rowno(i: int) -> int:
        return int(rows[i])

    def column(c: str) -> _Column:
        col = data[c]
        if isinstance(col, np.ndarray):  # a parsed score column wanted as cells
            return _Column.of(col.tolist())
        return col

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
        if c is None:
            return None
        col = column(c)
        return col.per_row(col.map(_text))

    ds_col = column(role_col["dataset"])
    ds_text = ds_col.map(_text)
    bad = ds_col.first_row([d is None for d in ds_text])
    if bad is not None:
        raise InputError("empty dataset name", file=source, row=rowno(bad), column=role_col["dataset"],
                         expected="a dataset name in every row")
    dataset = ds_col.per_row(ds_text)
    score = _floats(data[role_col["score"]], file=source, column=role_col["score"], rowno=rowno, what="score")
    test_score = None
    if "test_score" in role_col and role_col["test_score"] != role_col["score"]:
        test_score = _floats(data[role_col["test_score"]], file=source, column=role_col["test_score"],
                             rowno=rowno, what="test score")
        if np.isnan(test_score).all() and "test_score" not in explicit:
            test_score = None  # canonical column present but never filled
    failed = np.isnan(score)
    if "status" in role_col:
        st = column(role_col["status"])
        kinds = [_status(v) for v in st.values]
        bad = st.first_row([k is None for k in kinds])
        if bad is not None:
            raise InputError("unknown status", file=source, row=rowno(bad), column=role_col["status"],
                             value=_text(st.values[st.codes[bad]]),
                             expected="ok or failed (also: success, completed, error, oom, pruned)")
        failed |= np.array([k == "failed" for k in kinds], dtype=bool)[st.codes]
    if failed.any():
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
        ds_ids = {d: i for i, d in enumerate(dict.fromkeys(ds_text))}
        rows_per_ds = int(np.bincount(np.array([ds_ids[d] for d in ds_text], dtype=np.int64)[ds_col.codes]).max())
        measured = []
        for c in list(hp_cols):
            vals = [v for v in column(c).values if not _blank(v)]
            numeric = all(isinstance(parse_value(v), int | float) for v in vals)
            if numeric and len(set(map(str, vals))) > rows_per_ds:
                measured.append(c)
        hp_cols = [c for c in hp_cols if c not in measured]
        if measured:
            notes.append(f"numeric columns treated as measurements, not HPs: {', '.join(measured)} "
                         f"(choose HP columns explicitly with `ColumnSpec.hps`)")
        if hp_cols and "config" not in role_col:
            notes.append(f"HP columns: {', '.join(hp_cols)}")
    json_src = column(hp_json) if hp_json is not None else None
    hp_src = [column(c) for c in hp_cols]
    json_objs = [] if json_src is None else _json_cells(json_src, file=source, column=hp_json or "", rowno=rowno)
    parsed = [c.map(lambda v: None if _blank(v) else parse_value(v)) for c in hp_src]
    hp_keys = [c.removeprefix("hp_") for c in hp_cols]

    def hps_of_row(r: int) -> dict[str, Any]:
        """The HPs of row ``r``: its JSON cell, then its HP columns (blank cells left out)."""
        h: dict[str, Any] = {}
        if json_src is not None:
            h.update(json_objs[json_src.codes[r]] or {})
        for name, src, vals in zip(hp_keys, hp_src, parsed, strict=True):
            v = vals[src.codes[r]]
            if v is not None:
                h[name] = v
        return h

    # Each config's HPs are those of its first row.
    config_col = role_col.get("config")
    if config_col is not None:
        cc = column(config_col)
        cc_text = cc.map(_text)
        bad = cc.first_row([c is None for c in cc_text])
        if bad is not None:
            raise InputError("empty config id", file=source, row=rowno(bad), column=config_col,
                             expected="a config id in every row")
        config = cc.per_row(cc_text)
        config_codes, config_values = cc.codes, cc_text
        first_rows = _first_rows(_ids_by_text(cc_text, cc.codes))
        hps: dict[str, dict[str, Any]] = {str(config[r]): hps_of_row(r) for r in first_rows.tolist()}
    else:
        if not hp_cols and hp_json is None:
            raise InputError("no column identifies the configs", file=source,
                             expected="a config-id column (`ColumnSpec.config`), HP columns (hp_* or "
                                      "`ColumnSpec.hps`) or a JSON HP column (`ColumnSpec.hp_json`); "
                                      f"columns are {cols}")
        # A row's HPs depend only on its cells in the JSON and HP columns: one dict per distinct
        # combination of those cells, and one config per distinct dict.
        combo, first_of_combo = _combinations(
            ([json_src.codes] if json_src is not None else []) + [c.codes for c in hp_src], n_rows)
        combo_hps = [hps_of_row(r) for r in first_of_combo.tolist()]
        keys: dict[str, str] = {}
        combo_id = []
        for h in combo_hps:  # combos are in order of first appearance, as ids are given
            k = json.dumps(h, sort_keys=True, default=str)
            if k not in keys:
                keys[k] = f"c{len(keys) + 1}"
            combo_id.append(keys[k])
        ids = np.empty(len(combo_id), dtype=object)
        ids[:] = combo_id
        config = ids[combo]
        config_codes, config_values = combo, combo_id
        first_rows = _first_rows(_ids_by_text(combo_id, combo))
        hps = {str(config[r]): dict(combo_hps[combo[r]]) for r in first_rows.tolist()}
    n_ds = len(set(ds_text))
    if config_col is None and n_ds > 1 and len(hps) == n_rows:
        raise InputError("every row is a different config, so no config was run on two datasets", file=source,
                         expected=f"HP columns that identify configs (HP columns used: {hp_cols or hp_json}); "
                                  "choose them with `ColumnSpec.hps` or give a `ColumnSpec.config`")

    def axis(role: str) -> np.ndarray | None:
        c = role_col.get(role)
        if c is None:
            return None
        col = column(c)
        texts = col.map(_text)
        if all(v is None for v in texts):
            return None
        return col.per_row(texts)

    remember_codes(dataset, ds_col.codes, ds_text)
    remember_codes(config, config_codes, config_values)
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
        rows=rows,
        hp_columns=tuple(hp_cols),
        notes=tuple(notes),
    )


def _status(v: Any) -> str | None:
    """"ok" or "failed" for a status cell (blank = ok); None for an unknown status."""
    s = _text(v)
    if s is None or s.lower() in _OK_STATUS:
        return "ok"
    if s.lower() in _FAILED_STATUS:
        return "failed"
    return None


def _combinations(codes: list[np.ndarray], n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(combination index of each row, first row of each combination), combinations numbered
    in order of first appearance."""
    if not codes:
        return np.zeros(n_rows, dtype=np.int64), np.zeros(1 if n_rows else 0, dtype=np.int64)
    key = codes[0].astype(np.int64)
    for c in codes[1:]:
        size = int(c.max()) + 1 if len(c) else 1
        if (int(key.max()) + 1) * size > max(4 * n_rows, 1 << 16):  # keep keys dense: renumber so far
            key, _ = _dense(key)
        key *= size  # in place: a 1M-row table makes every temporary array count
        key += c
    return _dense(key)


def _first_of(key: np.ndarray, block: int = 1 << 16) -> np.ndarray:
    """For dense non-negative keys: the first row of each key present, in row order."""
    n = len(key)
    first = np.full(int(key.max()) + 1, n, dtype=np.int64)
    # Row numbers a block at a time: a 1M-row arange is 8 MB of fresh memory, and fresh memory is
    # what a large table costs most (bench/bench_cbs.py).
    rows = np.arange(min(block, n), dtype=np.int64)
    for at in range(0, n, block):
        part = key[at: at + block]
        np.minimum.at(first, part, rows[: len(part)] + at)
    out: np.ndarray = np.sort(first[first < n])
    return out


def _dense(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(dense id of each row's key, first row of each id), ids in order of first appearance."""
    n = len(key)
    if n == 0:
        return key.astype(np.int64), np.zeros(0, dtype=np.int64)
    if int(key.max()) >= max(4 * n, 1 << 16):
        _, key = np.unique(key, return_inverse=True)
        key = key.ravel()
    first = _first_of(key)
    ids = np.full(int(key.max()) + 1, -1, dtype=np.int64)
    ids[key[first]] = np.arange(len(first))
    return ids[key], first


def _ids_by_text(texts: Sequence[Any], codes: np.ndarray) -> np.ndarray:
    """Per row, an integer id of its text (equal texts, equal ids)."""
    if len(set(texts)) == len(texts):  # distinct already: the codes are the ids
        return codes
    ids = {t: i for i, t in enumerate(dict.fromkeys(texts))}
    out: np.ndarray = np.array([ids[t] for t in texts], dtype=np.int64)[codes]
    return out


def _first_rows(ids: np.ndarray) -> np.ndarray:
    """The first row of each distinct id, in row order."""
    if len(ids) == 0:
        return np.zeros(0, dtype=np.int64)
    if int(ids.max()) >= max(4 * len(ids), 1 << 16):
        return _dense(ids)[1]
    return _first_of(ids)


def _json_cells(col: _Column, *, file: str, column: str, rowno: Callable[[int], int]) -> list[dict[str, Any] | None]:
    """The parsed JSON object of each distinct cell (None when blank); the first bad row raises."""
    out: list[dict[str, Any] | None] = []
    errors: list[InputError | None] = []
    for v in col.values:
        obj, problem = _json_cell(v)
        out.append(obj)
        errors.append(problem)
    bad = col.first_row([e is not None for e in errors])
    if bad is not None:
        v = col.values[col.codes[bad]]
        problem = errors[col.codes[bad]]
        assert problem is not None
        raise InputError(str(problem.args[0]), file=file, row=rowno(bad), column=column,
                         value=v[:60] if isinstance(v, str) else v, expected=problem.expected)
    return out


def _json_cell(v: Any) -> tuple[dict[str, Any] | None, InputError | None]:
    if _blank(v):
        return None, None
    obj = v
    if isinstance(v, str):
        try:
            obj = json.loads(v)
        except json.JSONDecodeError as exc:
            return None, InputError(f"malformed JSON ({exc.msg})",
                                    expected='a JSON object such as {"learning_rate": 1e-4}')
    if not isinstance(obj, dict):
        return None, InputError("HP cell is not a JSON object",
                                expected='a JSON object such as {"learning_rate": 1e-4}')
    return obj, None


def _floats(col: _Column | np.ndarray, *, file: str, column: str, rowno: Callable[[int], int],
            what: str) -> np.ndarray:
    """A numeric column: parsed by the reader already, or parsed once per distinct cell."""
    if isinstance(col, np.ndarray):  # the reader's own array, nobody else's: no copy
        out: np.ndarray = col.astype(float, copy=False)
        return out
    vals = np.empty(len(col.values), dtype=float)
    bad = np.zeros(len(col.values), dtype=bool)
    for i, v in enumerate(col.values):
        try:
            vals[i] = _to_float1(v)
        except (TypeError, ValueError):
            bad[i] = True
    row = col.first_row(bad.tolist())
    if row is not None:
        v = col.values[col.codes[row]]
        raise InputError(f"non-numeric {what}", file=file, row=rowno(row), column=column, value=v,
                         expected="a number" if isinstance(v, bool) else "a number (empty or NaN for a failed run)")
    res: np.ndarray = vals[col.codes]
    return res


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


def _to_float1(v: Any) -> float:
    """One score cell as a float: blank -> NaN; booleans and text that is not a number raise."""
    if _blank(v):
        return math.nan
    if isinstance(v, bool):
        raise TypeError("a boolean is not a score")
    return float(v)


def _text(v: Any) -> str | None:
    if _blank(v):
        return None
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()
