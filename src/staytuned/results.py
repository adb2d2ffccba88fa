"""Results tables (CSV, Parquet, JSON Lines) -> validated long table -> :class:`ScoreMatrix`.

A results table has one row per run: a dataset column, the HPs of the run (``hp_<name>``
columns, other role-less columns, one JSON column, or just a config-id column), a score, and
optional status / seed / model / method / train_size / metric / split / group columns.
The column names default to the canonical table of docs/CONTRACTS.md (``staytuned results
export``) and are configurable with :class:`ColumnSpec`.

Light module: numpy at import time only; pandas/pyarrow are imported inside the readers.

Public API::

    table = load_results("runs.csv", columns=ColumnSpec(score="LLMaaJ-AC", dataset="Dataset"))
    table = table.slice(model="mistral-7b", method="lora", train_size=1000)
    matrix = table.score_matrix(direction="max", agg="mean")     # configs x datasets
    choose, score = table.paired_matrices("Dev", "Test")          # X-Dev chooses, X-Test scores

:class:`ScoreMatrix` is also what the search strategies build directly with
:meth:`ScoreMatrix.from_dense` and hand to :func:`staytuned.cbs.rank`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from staytuned.errors import InputError

__all__ = [
    "AGGREGATIONS",
    "ColumnSpec",
    "from_records",
    "ResultsTable",
    "ScoreMatrix",
    "infer_direction",
    "load_results",
    "natural_key",
    "normalize",
]

AGGREGATIONS = ("mean", "median", "max", "min")
DIRECTIONS = ("max", "min")
_OK_STATUS = {"ok", "success", "succeeded", "complete", "completed", "done", "finished"}
# A pruned trial stopped early because it looked bad: its score is partial, so it counts as failed.
_FAILED_STATUS = {"failed", "fail", "failure", "error", "errored", "oom", "pruned", "crashed"}
# Metric names whose smaller values are better; everything else defaults to "max".
_LOWER_IS_BETTER = re.compile(
    r"(loss|perplexity|ppl|error|err|wer|cer|mae|mse|rmse|latency|runtime|time|cost|regret)",
    re.IGNORECASE,
)


def natural_key(text: str) -> tuple:
    """Sort key in natural order: ``c2`` before ``c10``."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in re.split(r"(\d+)", str(text))
        if part != ""
    )


def nearest_size(sizes: Sequence[int], want: int | None) -> int:
    """The measured train size nearest ``want`` on a log scale (100 is nearer to 200 than 1000
    is; ties go to the smaller); the largest for None (the whole train split)."""
    if want is None:
        return max(sizes)
    return min(sizes, key=lambda s: (abs(math.log(s / int(want))), s))


def infer_direction(metric: str | None) -> str:
    """``"min"`` for loss/perplexity/error-like metric names, else ``"max"``."""
    if metric and _LOWER_IS_BETTER.search(str(metric)):
        return "min"
    return "max"


def normalize(
    scores: np.ndarray, directions: Sequence[str] | str = "max", failed: np.ndarray | None = None
) -> np.ndarray:
    """Per-dataset normalized scores of a configs x datasets array.

    ``(s - worst_d) / (best_d - worst_d)`` over the successful cells of dataset ``d``, mirrored
    for ``"min"`` datasets, so 1.0 is the best and 0.0 the worst result on ``d``. Failed cells
    (``failed`` True) get 0.0 (the worst); missing cells (NaN and not failed) stay NaN. Where all
    successful cells of a dataset are equal they all get 1.0.
    """
    signed = _signed(np.asarray(scores, dtype=float), directions)
    with np.errstate(invalid="ignore", divide="ignore"):
        best = _col_nanmax(signed)
        worst = -_col_nanmax(-signed)
        span = best - worst
        norm = (signed - worst) / np.where(span > 0, span, 1.0)
        norm = np.where(span > 0, norm, np.where(np.isnan(signed), np.nan, 1.0))
    if failed is not None:
        norm = np.where(failed, 0.0, norm)
    return norm


def _col_nanmax(a: np.ndarray) -> np.ndarray:
    """Column max ignoring NaN; NaN for all-NaN columns (without numpy's warning)."""
    filled = np.where(np.isnan(a), -np.inf, a)
    out = filled.max(axis=0) if a.shape[0] else np.full(a.shape[1], -np.inf)
    return np.where(np.isneginf(out) & np.isnan(a).all(axis=0), np.nan, out)


def _signed(scores: np.ndarray, directions: Sequence[str] | str) -> np.ndarray:
    """Scores flipped so that higher is better on every dataset."""
    if isinstance(directions, str):
        return scores if directions == "max" else -scores
    sign = np.array([1.0 if d == "max" else -1.0 for d in directions])
    return scores * sign[None, :]


@dataclass(frozen=True)
class ScoreMatrix:
    """Scores of configs (rows) on datasets (columns): the input of every CBS computation.

    Attributes:
        config_ids: one id per row (natural order breaks ranking ties: ``c2`` before ``c10``).
        datasets: one name per column.
        scores: float array (n_configs, n_datasets) of raw scores, seeds already aggregated;
            NaN where the cell is missing (never run) or failed.
        failed: bool array, True where every run of the cell failed (counts as the worst).
        directions: per dataset, ``"max"`` (higher is better) or ``"min"``.
        hps: per config, its HP dict (``{}`` when only ids are known).
        groups: per dataset, a group label for leave-one-group-out (or None).
        metrics: per dataset, the metric name (or None).
        notes: things the user should know (dropped datasets, missing cells ...).

    Derived (cached): ``normalized`` (see :func:`normalize`), ``missing``, ``signed`` (higher is
    better everywhere), ``natural_rank``, ``direction``; ``covers(tol, abs_tol)`` gives the
    coverage matrix. Treat instances as immutable (the caches assume it).
    """

    config_ids: tuple[str, ...]
    datasets: tuple[str, ...]
    scores: np.ndarray
    failed: np.ndarray
    directions: tuple[str, ...]
    hps: tuple[dict[str, Any], ...]
    groups: tuple[str | None, ...] | None = None
    metrics: tuple[str | None, ...] | None = None
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n, m = len(self.config_ids), len(self.datasets)
        if self.scores.shape != (n, m) or self.failed.shape != (n, m):
            raise InputError(
                "score matrix shape does not match its ids",
                value=self.scores.shape,
                expected=f"({n}, {m}) for {n} configs x {m} datasets",
            )
        if len(self.directions) != m or any(d not in DIRECTIONS for d in self.directions):
            raise InputError("bad directions", value=self.directions, expected="'max' or 'min' per dataset")
        if len(set(self.config_ids)) != n:
            raise InputError("config ids must be unique", field="config_ids")
        if len(set(self.datasets)) != m:
            raise InputError("dataset names must be unique", field="datasets")

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_dense(
        cls,
        scores: Any,
        *,
        config_ids: Sequence[str] | None = None,
        datasets: Sequence[str] | None = None,
        direction: str | Sequence[str] = "max",
        hps: Sequence[Mapping[str, Any]] | None = None,
        failed: Any = None,
        groups: Sequence[str | None] | None = None,
    ) -> ScoreMatrix:
        """Build from a 2-D array (configs x datasets); NaN = missing unless ``failed`` says so.

        Ids default to ``c1..cN`` and ``d1..dM``; ``direction`` is one value or one per dataset.
        """
        arr = np.array(scores, dtype=float, copy=True)
        if arr.ndim != 2:
            raise InputError("scores must be 2-D (configs x datasets)", value=arr.shape)
        n, m = arr.shape
        ids = tuple(str(c) for c in config_ids) if config_ids is not None else tuple(f"c{i + 1}" for i in range(n))
        ds = tuple(str(d) for d in datasets) if datasets is not None else tuple(f"d{j + 1}" for j in range(m))
        dirs = (direction,) * m if isinstance(direction, str) else tuple(direction)
        for d in dirs:
            _check_direction(d)
        fail = np.zeros((n, m), bool) if failed is None else np.array(failed, dtype=bool)
        arr[fail] = np.nan
        return cls(
            config_ids=ids,
            datasets=ds,
            scores=arr,
            failed=fail,
            directions=dirs,
            hps=tuple(dict(h) for h in hps) if hps is not None else tuple({} for _ in range(n)),
            groups=tuple(groups) if groups is not None else None,
        )

    # -- derived views ----------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return self.scores.shape

    @cached_property
    def missing(self) -> np.ndarray:
        """True where the config was never run on the dataset."""
        return np.isnan(self.scores) & ~self.failed

    @cached_property
    def normalized(self) -> np.ndarray:
        """Normalized scores: 1 = best on the dataset, 0 = worst (and failed), NaN = missing."""
        return normalize(self.scores, self.directions, self.failed)

    @cached_property
    def natural_rank(self) -> np.ndarray:
        """Position of each config id in natural order (the last ranking tie-break)."""
        nat = np.empty(len(self.config_ids), dtype=np.int64)
        order = sorted(range(len(self.config_ids)), key=lambda i: natural_key(self.config_ids[i]))
        nat[order] = np.arange(len(self.config_ids))
        return nat

    @cached_property
    def signed(self) -> np.ndarray:
        """Raw scores flipped so higher is better everywhere (NaN for missing and failed)."""
        return _signed(self.scores, self.directions)

    @property
    def direction(self) -> str:
        """The common direction, or ``"mixed"`` when datasets differ."""
        dirs = set(self.directions)
        return dirs.pop() if len(dirs) == 1 else "mixed"

    def covers(self, tol: float = 0.01, abs_tol: float | None = None) -> np.ndarray:
        """Bool array: config covers dataset (within ``tol`` relative, or ``abs_tol``, of its best).

        Relative: ``s >= best - tol*|best|`` for "max" datasets, ``s <= best + tol*|best|`` for
        "min". Failed and missing cells never cover. A 1e-12 slack absorbs float rounding.
        """
        check_tolerance(tol, abs_tol)
        signed = self.signed
        best = _col_nanmax(signed)
        slack = np.abs(best) * tol if abs_tol is None else np.full_like(best, abs_tol)
        slack = slack + 1e-12 * np.maximum(1.0, np.abs(best))
        with np.errstate(invalid="ignore"):
            return signed >= (best - slack)[None, :]

    def subset(self, configs: Any = None, datasets: Any = None) -> ScoreMatrix:
        """Rows/columns by index arrays, bool masks or names."""
        ci = self._index(configs, self.config_ids)
        di = self._index(datasets, self.datasets)
        return ScoreMatrix(
            config_ids=tuple(self.config_ids[i] for i in ci),
            datasets=tuple(self.datasets[j] for j in di),
            scores=self.scores[np.ix_(ci, di)],
            failed=self.failed[np.ix_(ci, di)],
            directions=tuple(self.directions[j] for j in di),
            hps=tuple(self.hps[i] for i in ci),
            groups=tuple(self.groups[j] for j in di) if self.groups is not None else None,
            metrics=tuple(self.metrics[j] for j in di) if self.metrics is not None else None,
            notes=self.notes,
        )

    @staticmethod
    def _index(sel: Any, names: tuple[str, ...]) -> np.ndarray:
        if sel is None:
            return np.arange(len(names))
        arr = np.asarray(sel)
        if arr.dtype == bool:
            return np.flatnonzero(arr)
        if arr.dtype.kind in "iu":
            return arr.astype(int)
        pos = {n: i for i, n in enumerate(names)}
        missing = [s for s in arr.tolist() if s not in pos]
        if missing:
            raise InputError("unknown names", value=missing[:5], expected=f"some of {list(names)[:10]}")
        return np.array([pos[s] for s in arr.tolist()], dtype=int)

    def config_index(self, ref: str) -> int:
        """Index of a config given by id (``c3``) or HP assignment (``lr=1e-4,epochs=3``)."""
        if ref in self.config_ids:
            return self.config_ids.index(ref)
        want = parse_assignment(ref)
        matches = [i for i, h in enumerate(self.hps) if _hp_match(h, want)]
        if len(matches) != 1:
            shown = ", ".join(self.config_ids[:8])
            raise InputError(
                f"{'no' if not matches else len(matches)} configs match",
                field="default config",
                value=ref,
                expected=f"a config id (e.g. {shown}) or HP assignment matching exactly one config",
            )
        return matches[0]


_HP_ALIASES = {"lr": "learning_rate", "bs": "batch_size", "batch": "batch_size", "r": "lora_r", "alpha": "lora_alpha"}


def parse_assignment(text: str) -> dict[str, Any]:
    """``"lr=1e-4,epochs=3"`` -> ``{"learning_rate": 1e-4, "epochs": 3}`` (aliases lr, bs, r, alpha)."""
    out: dict[str, Any] = {}
    for part in [p for p in text.split(",") if p.strip()]:
        if "=" not in part:
            raise InputError("not an HP assignment", value=text, expected="name=value[,name=value...]")
        key, val = (s.strip() for s in part.split("=", 1))
        out[_HP_ALIASES.get(key, key)] = parse_value(val)
    return out


def _hp_match(hps: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    for key, val in want.items():
        have = hps.get(key, hps.get(f"hp_{key}"))
        if have is None and key.startswith("hp_"):
            have = hps.get(key[3:])
        if have is None:
            return False
        if isinstance(have, int | float) and isinstance(val, int | float):
            if not math.isclose(float(have), float(val), rel_tol=1e-9):
                return False
        elif str(have) != str(val):
            return False
    return True


def parse_value(text: Any) -> Any:
    """Cell text -> int, float or str (``"3"`` -> 3, ``"1e-4"`` -> 0.0001, ``"cosine"`` stays)."""
    if not isinstance(text, str):
        if isinstance(text, float) and text.is_integer() and abs(text) < 2**53:
            return text  # keep 0.0 as float: the column may mix 0.25 and 0.0
        return text
    s = text.strip()
    try:
        return int(s)
    except ValueError:
        pass
    try:
        return float(s)
    except ValueError:
        return s


def check_tolerance(tol: float, abs_tol: float | None) -> None:
    if not (isinstance(tol, int | float) and math.isfinite(tol) and 0 <= tol < 1):
        raise InputError("relative tolerance out of range", field="tol", value=tol, expected="0 <= tol < 1 (e.g. 0.01 = 1%)")
    if abs_tol is not None and not (math.isfinite(abs_tol) and abs_tol >= 0):
        raise InputError("absolute tolerance out of range", field="abs_tol", value=abs_tol, expected="a finite number >= 0")


def _check_direction(d: str) -> str:
    if d not in DIRECTIONS:
        raise InputError("unknown direction", field="direction", value=d, expected="'max' (higher is better) or 'min'")
    return d


# ------------------------------------------------------------------------------------------
# Column roles


@dataclass(frozen=True)
class ColumnSpec:
    """Which column plays which role. Defaults read the canonical table (docs/CONTRACTS.md).

    Optional roles (everything but ``dataset`` and ``score``) are used when their column exists;
    naming a non-default column that does not exist is an error.

    HP columns, when ``hps`` is not given: the ``hp_*`` columns if any; else every column with
    no role, minus ``ignore``, minus numeric columns with more distinct values than the largest
    number of rows of one dataset (those are measurements such as other metrics, not HPs).
    """

    dataset: str = "dataset"
    score: str = "score"
    config: str | None = "config_id"
    test_score: str | None = "score_test"
    status: str | None = "status"
    seed: str | None = "seed"
    model: str | None = "model"
    method: str | None = "method"
    train_size: str | None = "train_size"
    metric: str | None = "metric"
    split: str | None = "split"
    group: str | None = None
    hp_json: str | None = "hps"
    hps: tuple[str, ...] | None = None
    ignore: tuple[str, ...] = ("runtime_s", "versions", "error", "trial_id", "trial_number", "study",
                               "metrics", "n_train", "n_eval", "train_tokens_per_s",
                               "peak_memory_mb")

    def roles(self) -> dict[str, str]:
        """role -> column name for every role that has one (not hps/ignore)."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("hps", "ignore") and getattr(self, f.name) is not None
        }

    def explicit(self) -> set[str]:
        """Roles whose column name differs from the default (the user named them)."""
        defaults = ColumnSpec()
        return {r for r in self.roles() if getattr(self, r) != getattr(defaults, r)}


# ------------------------------------------------------------------------------------------
# Reading files


def _read_columns(path: Path) -> tuple[list[str], dict[str, list[Any]], Callable[[int], int]]:
    """Read CSV/Parquet/JSONL into (column names, column -> python values, row-number mapper)."""
    label = str(path)
    if not path.exists():
        raise InputError("file not found", file=label, expected="a CSV, Parquet or JSON Lines results table")
    if path.is_dir():
        raise InputError("is a directory", file=label, expected="a results table file")
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix.lower() in (".gz", ".bz2", ".zst") else path.suffix.lower()
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
    except Exception as exc:  # noqa: BLE001 - every parser error becomes one clear message
        raise InputError(f"cannot read the table: {exc}".splitlines()[0], file=label,
                         expected="a readable CSV (header row first), Parquet or JSON Lines file") from None
    cols = [str(c) for c in frame.columns]
    data = {c: frame[c].tolist() for c in cols}
    # CSV line numbers as a spreadsheet shows them: the header is row 1.
    return cols, data, lambda i: i + 2


def _read_jsonl(path: Path) -> tuple[list[str], dict[str, list[Any]], Callable[[int], int]]:
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    opener = open
    if path.suffix == ".gz":
        import gzip

        opener = gzip.open  # type: ignore[assignment]
    with opener(path, "rt", encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"invalid JSON ({exc.msg})", file=str(path), row=n,
                                 expected="one JSON object per line") from None
            if not isinstance(obj, dict):
                raise InputError("not a JSON object", file=str(path), row=n, value=type(obj).__name__,
                                 expected="one JSON object per line")
            rows.append(obj)
            lines.append(n)
    cols: list[str] = []
    for r in rows:
        for c in r:
            if c not in cols:
                cols.append(c)
    data = {c: [r.get(c) for r in rows] for c in cols}
    return cols, data, lambda i: lines[i]


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, str) and v.strip() == "") or (isinstance(v, float) and math.isnan(v))


def _to_float(values: list[Any], *, file: str, column: str, rowno: Callable[[int], int], what: str) -> np.ndarray:
    out = np.empty(len(values), dtype=float)
    for i, v in enumerate(values):
        if _blank(v):
            out[i] = np.nan
            continue
        if isinstance(v, bool):
            raise InputError(f"non-numeric {what}", file=file, row=rowno(i), column=column, value=v, expected="a number")
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


# ------------------------------------------------------------------------------------------
# The validated long table


@dataclass(frozen=True)
class ResultsTable:
    """A validated long results table: one entry per run, configs identified.

    Build with :func:`load_results` (files) or :func:`from_records` (dicts). Arrays are aligned
    by run; ``hps`` maps config id -> HP dict (``hp_`` prefix stripped).
    """

    source: str
    dataset: np.ndarray  # object (str)
    config: np.ndarray  # object (str)
    score: np.ndarray  # float; NaN = failed
    failed: np.ndarray  # bool
    hps: dict[str, dict[str, Any]]
    test_score: np.ndarray | None = None
    seed: np.ndarray | None = None
    model: np.ndarray | None = None
    method: np.ndarray | None = None
    train_size: np.ndarray | None = None
    metric: np.ndarray | None = None
    split: np.ndarray | None = None
    group: np.ndarray | None = None
    rows: np.ndarray | None = None  # source row numbers, for messages
    hp_columns: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def datasets(self) -> list[str]:
        return sorted(set(self.dataset.tolist()), key=natural_key)

    @property
    def config_ids(self) -> list[str]:
        return sorted(set(self.config.tolist()), key=natural_key)

    def values(self, axis: str) -> list[str]:
        """Distinct values of ``model``/``method``/``train_size``/``metric``/``split``/``group``."""
        col = getattr(self, axis)
        if col is None:
            return []
        return sorted({v for v in col.tolist() if v is not None}, key=natural_key)

    def _take(self, mask: np.ndarray, note: str | None = None) -> ResultsTable:
        kw: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                kw[f.name] = v[mask]
        kept = set(kw["config"].tolist())
        kw["hps"] = {c: h for c, h in self.hps.items() if c in kept}
        if note:
            kw["notes"] = (*self.notes, note)
        return replace(self, **kw)

    def slice(
        self,
        *,
        model: str | None = None,
        method: str | None = None,
        train_size: int | str | None = None,
        datasets: Iterable[str] | None = None,
    ) -> ResultsTable:
        """Rows of one model / method / train size (model names matched loosely, e.g. org prefix)."""
        mask = np.ones(len(self), bool)
        for axis, want in (("model", model), ("method", method), ("train_size", train_size)):
            if want is None:
                continue
            col = getattr(self, axis)
            if col is None:
                raise InputError(f"the table has no {axis} column", file=self.source, column=axis,
                                 expected=f"a {axis} column to slice by (see --{axis.replace('_', '-')}-col)")
            keys = np.array([_loose(v, axis) if v is not None else None for v in col.tolist()], dtype=object)
            hit = keys == _loose(str(want), axis)
            if not hit.any():
                raise InputError(f"no rows with {axis} {want!r}", file=self.source, column=axis,
                                 expected=f"one of {self.values(axis)}")
            mask &= hit
        if datasets is not None:
            mask &= np.isin(self.dataset, list(datasets))
        if not mask.any():
            raise InputError("the slice is empty", file=self.source, expected="a model/method/train size combination present in the table")
        return self._take(mask)

    def _check_single(self, axis: str) -> None:
        vals = self.values(axis)
        if len(vals) > 1:
            flag = {"model": "--model", "method": "--method", "train_size": "--train-size"}[axis]
            raise InputError(f"the table mixes several {axis} values", file=self.source, column=axis,
                             value=vals[:10], expected=f"one; choose with {flag} (or .slice({axis}=...))")

    # -- matrices ---------------------------------------------------------------------------
    def score_matrix(
        self,
        *,
        direction: str | Mapping[str, str] | None = None,
        agg: str = "mean",
        use: str = "score",
        datasets: Sequence[str] | None = None,
        rename: Mapping[str, str] | None = None,
    ) -> ScoreMatrix:
        """Configs x datasets matrix of one model/method/train-size slice.

        ``direction``: "max"/"min" for all, a mapping metric -> direction, or None to infer from
        the metric column (loss/perplexity/error-like names are "min"; default "max").
        ``agg``: how repeated runs (seeds, duplicate rows) of a cell combine, over its successful
        runs; a cell is failed only when every run failed. ``use``: "score" or "test_score".
        ``datasets``/``rename``: keep only these datasets / rename them (for split pairing).
        """
        if agg not in AGGREGATIONS:
            raise InputError("unknown aggregation", field="agg", value=agg, expected=" | ".join(AGGREGATIONS))
        for axis in ("model", "method", "train_size"):
            self._check_single(axis)
        score = self.score if use == "score" else self.test_score
        if score is None:
            raise InputError("the table has no test score column", file=self.source, column="score_test",
                             expected="a second score column (--test-score-col)")
        mask = np.ones(len(self), bool) if datasets is None else np.isin(self.dataset, list(datasets))
        if use != "score":
            # A run without a test value was not evaluated on test: missing, not failed.
            mask &= ~(np.isnan(score) & ~self.failed)
        if not mask.any():
            raise InputError("no runs to build a score matrix from", file=self.source,
                             expected="at least one row with a dataset and a score")
        ds_all = self.dataset[mask]
        if rename:
            ds_all = np.array([rename.get(d, d) for d in ds_all.tolist()], dtype=object)
        cfg_all = self.config[mask]
        sc = score[mask]
        fl = self.failed[mask] | np.isnan(sc)
        dnames = sorted(set(ds_all.tolist()), key=natural_key)
        cids = sorted(set(cfg_all.tolist()), key=natural_key)
        dpos = {d: j for j, d in enumerate(dnames)}
        cpos = {c: i for i, c in enumerate(cids)}
        di = np.fromiter((dpos[d] for d in ds_all.tolist()), int, len(ds_all))
        ci = np.fromiter((cpos[c] for c in cfg_all.tolist()), int, len(cfg_all))
        n, m = len(cids), len(dnames)
        cell = ci * m + di
        ran = np.zeros(n * m, bool)
        ran[cell] = True
        ok = ~fl
        values = _aggregate(cell[ok], sc[ok], n * m, agg)
        failed = ran & np.isnan(values)
        # directions per dataset
        metric_of = self._metric_per_dataset(ds_all, mask, dnames)
        dirs = tuple(_direction_for(direction, metric_of[d], self.source) for d in dnames)
        groups = self._group_per_dataset(ds_all, mask, dnames)
        notes = list(self.notes)
        n_missing = int((~ran).sum())
        if n_missing:
            notes.append(f"{n_missing} of {n * m} config x dataset cells were never run (missing: excluded from coverage)")
        n_failed = int(failed.sum())
        if n_failed:
            notes.append(f"{n_failed} cells failed (count as the worst on their dataset)")
        return ScoreMatrix(
            config_ids=tuple(cids),
            datasets=tuple(dnames),
            scores=values.reshape(n, m),
            failed=failed.reshape(n, m),
            directions=dirs,
            hps=tuple(self.hps.get(c, {}) for c in cids),
            groups=groups,
            metrics=tuple(metric_of[d] for d in dnames),
            notes=tuple(notes),
        )

    def _metric_per_dataset(self, ds: np.ndarray, mask: np.ndarray, dnames: list[str]) -> dict[str, str | None]:
        out: dict[str, str | None] = {d: None for d in dnames}
        if self.metric is None:
            return out
        seen: dict[str, set] = {d: set() for d in dnames}
        for d, mt in zip(ds.tolist(), self.metric[mask].tolist(), strict=True):
            if mt is not None:
                seen[d].add(mt)
        for d, s in seen.items():
            if len(s) > 1:
                raise InputError(f"dataset {d!r} has several metrics", file=self.source, column="metric",
                                 value=sorted(s), expected="one metric per dataset")
            out[d] = next(iter(s)) if s else None
        return out

    def _group_per_dataset(self, ds: np.ndarray, mask: np.ndarray, dnames: list[str]) -> tuple | None:
        if self.group is None:
            return None
        seen: dict[str, set] = {d: set() for d in dnames}
        for d, g in zip(ds.tolist(), self.group[mask].tolist(), strict=True):
            seen[d].add(g)
        out = []
        for d in dnames:
            if len(seen[d]) > 1:
                raise InputError(f"dataset {d!r} is in several groups", file=self.source, column="group",
                                 value=sorted(map(str, seen[d])), expected="one group per dataset")
            out.append(next(iter(seen[d])))
        return tuple(out)

    def split_of(self) -> list[tuple[str, str, str | None]]:
        """Distinct (dataset, base name, split): from the split column when the table has one
        (base = dataset), else from a dataset-name suffix such as ``-Dev``/``_test``."""
        if self.split is not None:
            seen = dict.fromkeys(zip(self.dataset.tolist(), self.split.tolist(), strict=True))
            return [(d, d, s) for d, s in seen]
        out = []
        for d in sorted(set(self.dataset.tolist()), key=natural_key):
            m = _SPLIT_SUFFIX.match(d)
            out.append((d, m.group(1), m.group(2)) if m else (d, d, None))
        return out

    def _split_names(self, split: str) -> dict[str, str]:
        """base name -> dataset name of the datasets in ``split``."""
        return {b: d for d, b, s in self.split_of() if s is not None and s.lower() == split.lower()}

    def has_split_pairs(self, choose: str = "Dev", score: str = "Test") -> bool:
        """True when some dataset exists in both splits (``X-Dev`` and ``X-Test``)."""
        return bool(set(self._split_names(choose)) & set(self._split_names(score)))

    def paired_matrices(
        self, choose: str = "Dev", score: str = "Test", **kw: Any
    ) -> tuple[ScoreMatrix, ScoreMatrix]:
        """(choose, score) matrices over the datasets present in both splits, named by base name.

        Splits come from the split column when the table has one, else from dataset names ending
        in ``-<split>`` or ``_<split>`` (case-insensitive), e.g. ``ClapNQ-Dev``/``ClapNQ-Test``.
        Datasets in neither split or without a partner (e.g. ``BioASQ-Dev-Sampled``) are left
        out and named in the notes.
        """
        ch, sc = self._split_names(choose), self._split_names(score)
        bases = sorted(set(ch) & set(sc), key=natural_key)
        if not bases:
            raise InputError(f"no dataset has both a {choose!r} and a {score!r} split", file=self.source,
                             column="split" if self.split is not None else "dataset",
                             expected=f"dataset names like X-{choose} and X-{score}, or a split column")
        used = {(ch[b], choose.lower()) for b in bases} | {(sc[b], score.lower()) for b in bases}
        dropped = sorted({d if self.split is None else f"{d} ({s})" for d, _, s in self.split_of()
                          if (d, (s or "").lower()) not in used}, key=natural_key)
        t = self
        if dropped:
            t = replace(self, notes=(*self.notes, f"left out (no {choose}/{score} pair): {', '.join(dropped)}"))
        if self.split is not None:
            mch = t._take(np.array([s is not None and s.lower() == choose.lower() for s in self.split.tolist()]))
            msc = t._take(np.array([s is not None and s.lower() == score.lower() for s in self.split.tolist()]))
            a = mch.score_matrix(datasets=bases, **kw)
            b = msc.score_matrix(datasets=bases, **kw)
        else:
            a = t.score_matrix(datasets=[ch[b] for b in bases], rename={ch[b]: b for b in bases}, **kw)
            b = t.score_matrix(datasets=[sc[b] for b in bases], rename={sc[b]: b for b in bases}, **kw)
        return _align(a, b)

    def test_matrices(self, **kw: Any) -> tuple[ScoreMatrix, ScoreMatrix]:
        """(choose on ``score``, score on ``test_score``) over the same configs and datasets."""
        a = self.score_matrix(use="score", **kw)
        b = self.score_matrix(use="test_score", **kw)
        return _align(a, b)

    def split_matrix(self, split: str, **kw: Any) -> ScoreMatrix:
        """Matrix of the datasets of one split only, named by base name (``X-Dev`` -> ``X``)."""
        keep = {d: b for b, d in self._split_names(split).items()}
        if not keep:
            raise InputError(f"no dataset of split {split!r}", file=self.source,
                             column="split" if self.split is not None else "dataset",
                             expected=f"dataset names like X-{split} or a split column with {split!r}")
        t = self
        if self.split is not None:
            t = self._take(np.array([s is not None and s.lower() == split.lower() for s in self.split.tolist()]))
            return t.score_matrix(**kw)
        return t.score_matrix(datasets=list(keep), rename=keep, **kw)

    def choose_matrix(self, split: str | None = "auto", **kw: Any) -> tuple[ScoreMatrix, str]:
        """The matrix to rank on, and a sentence saying which datasets it holds.

        ``split``: "auto" (the ``Dev`` datasets when the table pairs ``X-Dev`` with ``X-Test``,
        else every dataset), "all"/None (every dataset), or a split name.
        """
        if split in (None, "all"):
            return self.score_matrix(**kw), "all datasets"
        if split == "auto":
            if self.has_split_pairs("Dev", "Test"):
                return self.split_matrix("Dev", **kw), "the Dev splits (auto: X-Dev/X-Test pairs found)"
            return self.score_matrix(**kw), "all datasets"
        return self.split_matrix(split, **kw), f"the {split} split"

    def eval_matrices(
        self, choose_split: str | None = "auto", score_split: str | None = "auto", **kw: Any
    ) -> tuple[ScoreMatrix, ScoreMatrix, str]:
        """(choose, score, description) for :func:`staytuned.cbs.evaluate`.

        Explicit split names pair ``X-<choose>`` with ``X-<score>`` (or a split column). "auto":
        the test score column when it has values (choose on score, report test); else
        ``-Dev``/``-Test`` pairs when the dataset names have them; else one matrix for both.
        "none" for both: one matrix, ignoring test scores and splits.
        """
        auto = {"auto", None}
        if choose_split == "none" and score_split == "none":
            m = self.score_matrix(**kw)
            return m, m, "choose and score on the same scores"
        if choose_split not in auto or score_split not in auto:
            ch = "Dev" if choose_split in auto else choose_split
            sc = "Test" if score_split in auto else score_split
            a, b = self.paired_matrices(ch, sc, **kw)
            return a, b, f"choose on {ch}, score on {sc}"
        if self.test_score is not None:
            a, b = self.test_matrices(**kw)
            return a, b, "choose on the score column, score on the test score column (auto)"
        if self.has_split_pairs("Dev", "Test"):
            a, b = self.paired_matrices("Dev", "Test", **kw)
            return a, b, "choose on X-Dev, score on X-Test (auto)"
        m = self.score_matrix(**kw)
        return m, m, "choose and score on the same scores (no test scores or Dev/Test pairs found)"


_SPLIT_SUFFIX = re.compile(r"^(.+?)[-_](dev|test|val|valid|validation|train|eval)$", re.IGNORECASE)


def _align(a: ScoreMatrix, b: ScoreMatrix) -> tuple[ScoreMatrix, ScoreMatrix]:
    """Same configs (union, missing where absent) and datasets (intersection) in both."""
    ds = [d for d in a.datasets if d in set(b.datasets)]
    ids = sorted(set(a.config_ids) | set(b.config_ids), key=natural_key)
    hps = {c: h for m in (b, a) for c, h in zip(m.config_ids, m.hps, strict=True)}

    def widen(mx: ScoreMatrix) -> ScoreMatrix:
        sub = mx.subset(datasets=ds)
        pos = {c: i for i, c in enumerate(sub.config_ids)}
        scores = np.full((len(ids), len(ds)), np.nan)
        failed = np.zeros((len(ids), len(ds)), bool)
        for i, c in enumerate(ids):
            if c in pos:
                scores[i] = sub.scores[pos[c]]
                failed[i] = sub.failed[pos[c]]
        return replace(sub, config_ids=tuple(ids), scores=scores, failed=failed,
                       hps=tuple(hps[c] for c in ids))

    return widen(a), widen(b)


def _aggregate(cells: np.ndarray, values: np.ndarray, size: int, agg: str) -> np.ndarray:
    out = np.full(size, np.nan)
    if len(cells) == 0:
        return out
    if agg == "mean":
        total = np.bincount(cells, weights=values, minlength=size)
        count = np.bincount(cells, minlength=size)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, total / np.maximum(count, 1), np.nan)
    order = np.lexsort((values, cells))
    cs, vs = cells[order], values[order]
    starts = np.flatnonzero(np.r_[True, cs[1:] != cs[:-1]])
    if agg == "max":
        out[cs[starts]] = np.maximum.reduceat(vs, starts)
    elif agg == "min":
        out[cs[starts]] = np.minimum.reduceat(vs, starts)
    else:  # median
        ends = np.r_[starts[1:], len(cs)]
        out[cs[starts]] = [float(np.median(vs[s:e])) for s, e in zip(starts, ends, strict=True)]
    return out


def _direction_for(direction: str | Mapping[str, str] | None, metric: str | None, source: str) -> str:
    if direction is None:
        return infer_direction(metric)
    if isinstance(direction, str):
        return _check_direction(direction)
    if metric is not None and metric in direction:
        return _check_direction(direction[metric])
    if "*" in direction:
        return _check_direction(direction["*"])
    return infer_direction(metric)


_MODEL_PREFIX = re.compile(r"^(meta-)")


def _loose(value: Any, axis: str) -> str:
    """Comparable form: models ignore org prefix, case, '-'/'_'/'.'; train sizes compare as numbers."""
    s = str(value).strip()
    if axis == "train_size":
        try:
            f = float(s)
            return str(int(f)) if f.is_integer() else str(f)
        except ValueError:
            return s.lower()
    s = s.lower()
    if axis == "model":
        s = s.rsplit("/", 1)[-1]
        s = _MODEL_PREFIX.sub("", s)
    return re.sub(r"[-_.\s]", "", s)


# ------------------------------------------------------------------------------------------
# Loading


def load_results(path: str | Path, columns: ColumnSpec | None = None) -> ResultsTable:
    """Read and validate a results table (CSV, Parquet, JSON Lines by extension).

    Raises :class:`InputError` naming file, row and column for: an unreadable or empty file,
    missing columns, non-numeric scores, unknown status values, malformed JSON HP cells.
    """
    spec = columns or ColumnSpec()
    p = Path(path)
    cols, data, rowno = _read_columns(p)
    return _build(str(p), cols, data, rowno, spec)


def from_records(records: Sequence[Mapping[str, Any]], columns: ColumnSpec | None = None,
                 source: str = "<records>") -> ResultsTable:
    """Same as :func:`load_results` for in-memory rows (list of dicts)."""
    cols: list[str] = []
    for r in records:
        for c in r:
            if c not in cols:
                cols.append(c)
    data = {c: [r.get(c) for r in records] for c in cols}
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
                         f"(choose HP columns explicitly with --hp-cols)")
        if hp_cols and "config" not in role_col:
            notes.append(f"HP columns: {', '.join(hp_cols)}")
    hp_dicts: list[dict[str, Any]] = [dict() for _ in range(n_rows)]
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
                                 value=v if not isinstance(v, str) else v[:60], expected='a JSON object such as {"learning_rate": 1e-4}')
            hp_dicts[i].update(obj)
    for c in hp_cols:
        key = c[3:] if c.startswith("hp_") else c
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
                             expected=f"a config-id column (--config-col), HP columns (hp_* or --hp-cols) or a JSON HP column; columns are {cols}")
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
                                  "choose them with --hp-cols or give a --config-col")

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
