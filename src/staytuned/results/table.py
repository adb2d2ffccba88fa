"""The validated long results table (one entry per run) and the score matrices cut from it.

:class:`ResultsTable` slices by model / method / train size, aggregates repeated runs of a
cell, pairs ``X-Dev`` with ``X-Test`` and builds :class:`ScoreMatrix` instances.
"""

from __future__ import annotations

import math
import re
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from staytuned.errors import InputError
from staytuned.results.columns import check_direction, infer_direction
from staytuned.results.matrix import ScoreMatrix
from staytuned.results.order import natural_key

__all__ = ["AGGREGATIONS", "ResultsTable", "loose_key", "nearest_size", "remember_codes"]

AGGREGATIONS = ("mean", "median", "max", "min")

# Per-row text columns (dataset, config) -> (code per row, distinct values), keyed by the array
# object itself: the reader knows them already, and a 1M-row table would otherwise pay a dict
# lookup per row in every matrix it cuts. Only ever read for the very array they were made for.
_CODES: dict[int, tuple[weakref.ref[np.ndarray], np.ndarray, list[Any]]] = {}


def remember_codes(arr: np.ndarray, codes: np.ndarray, values: Sequence[Any]) -> None:
    """Record that ``arr[i] == values[codes[i]]`` (the reader calls this; arrays are immutable)."""
    key = id(arr)
    _CODES[key] = (weakref.ref(arr, lambda _ref: _CODES.pop(key, None)), codes, list(values))


def _codes(arr: np.ndarray) -> tuple[np.ndarray, list[Any]]:
    """(code per row, distinct values) of an object array, remembered or computed once."""
    hit = _CODES.get(id(arr))
    if hit is not None and hit[0]() is arr:
        return hit[1], hit[2]
    index: dict[Any, int] = {}
    codes = np.fromiter((index.setdefault(v, len(index)) for v in arr.tolist()), np.int64, len(arr))
    values = list(index)
    remember_codes(arr, codes, values)
    return codes, values


def nearest_size(sizes: Sequence[int], want: int | None) -> int:
    """The measured train size nearest ``want`` on a log scale (100 is nearer to 200 than 1000
    is; ties go to the smaller); the largest for None (the whole train split)."""
    if want is None:
        return max(sizes)
    return min(sizes, key=lambda s: (abs(math.log(s / int(want))), s))


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
        return sorted(_used(*_codes(self.dataset)), key=natural_key)

    @property
    def config_ids(self) -> list[str]:
        return sorted(_used(*_codes(self.config)), key=natural_key)

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
        for name in ("dataset", "config"):  # the codes of the kept rows stay valid
            codes, values = _codes(getattr(self, name))
            remember_codes(kw[name], codes[mask], values)
        kept = set(_used(*_codes(kw["config"])))
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
                                 expected=f"a {axis} column to slice by (see `ColumnSpec.{axis}`)")
            keys = np.array([loose_key(v, axis) if v is not None else None for v in col.tolist()], dtype=object)
            hit = keys == loose_key(str(want), axis)
            if not hit.any():
                raise InputError(f"no rows with {axis} {want!r}", file=self.source, column=axis,
                                 expected=f"one of {self.values(axis)}")
            mask &= hit
        if datasets is not None:
            mask &= self._rows_of(datasets)
        if not mask.any():
            raise InputError("the slice is empty", file=self.source,
                             expected="a model/method/train size combination present in the table")
        return self._take(mask)

    def _rows_of(self, datasets: Iterable[str]) -> np.ndarray:
        """Bool per row: its dataset is one of ``datasets``."""
        codes, values = _codes(self.dataset)
        wanted = set(datasets)
        out: np.ndarray = np.array([v in wanted for v in values], dtype=bool)[codes]
        return out

    def _check_single(self, axis: str) -> None:
        vals = self.values(axis)
        if len(vals) > 1:
            raise InputError(f"the table mixes several {axis} values", file=self.source, column=axis,
                             value=vals[:10], expected=f"one; choose one with `slice({axis}=...)`")

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
                             expected="a second score column (`ColumnSpec.test_score`)")
        mask = None if datasets is None else self._rows_of(datasets)
        if use != "score":
            # A run without a test value was not evaluated on test: missing, not failed.
            tested = ~(np.isnan(score) & ~self.failed)
            mask = tested if mask is None else mask & tested
        if mask is not None and not mask.any():
            raise InputError("no runs to build a score matrix from", file=self.source,
                             expected="at least one row with a dataset and a score")
        if mask is not None and mask.all():
            mask = None  # every row: no copies (a 1M-row table makes every copy count)
        dcodes, dvalues = _codes(self.dataset)
        ccodes, cvalues = _codes(self.config)
        sc = score
        if mask is not None:
            dcodes, ccodes, sc = dcodes[mask], ccodes[mask], score[mask]
        if rename:
            dvalues = [rename.get(d, d) for d in dvalues]
        fl = (self.failed if mask is None else self.failed[mask]) | np.isnan(sc)
        if mask is None:
            mask = np.ones(len(self), bool)
        dnames = sorted(set(_used(dcodes, dvalues)), key=natural_key)
        cids = sorted(set(_used(ccodes, cvalues)), key=natural_key)
        dpos = {d: j for j, d in enumerate(dnames)}
        cpos = {c: i for i, c in enumerate(cids)}
        di = np.array([dpos.get(d, -1) for d in dvalues], dtype=np.int64)[dcodes]
        ci = np.array([cpos.get(c, -1) for c in cvalues], dtype=np.int64)[ccodes]
        ci *= len(dnames)
        ci += di  # the cell of each run, in place
        ds_all = None if self.metric is None and self.group is None else np.array(dnames, dtype=object)[di]
        n, m = len(cids), len(dnames)
        cell = ci
        ran = np.zeros(n * m, bool)
        ran[cell] = True
        values = _aggregate(cell, sc, n * m, agg) if not fl.any() else _aggregate(cell[~fl], sc[~fl], n * m, agg)
        failed = ran & np.isnan(values)
        # directions per dataset
        metric_of = self._metric_per_dataset(ds_all, mask, dnames)
        dirs = tuple(_direction_for(direction, metric_of[d], self.source) for d in dnames)
        groups = self._group_per_dataset(ds_all, mask, dnames)
        notes = list(self.notes)
        n_missing = int((~ran).sum())
        if n_missing:
            notes.append(f"{n_missing} of {n * m} config x dataset cells were never run "
                         "(missing: excluded from coverage)")
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

    def _metric_per_dataset(self, ds: np.ndarray | None, mask: np.ndarray,
                            dnames: list[str]) -> dict[str, str | None]:
        out: dict[str, str | None] = {d: None for d in dnames}
        if self.metric is None or ds is None:
            return out
        seen: dict[str, set[str]] = {d: set() for d in dnames}
        for d, mt in zip(ds.tolist(), self.metric[mask].tolist(), strict=True):
            if mt is not None:
                seen[d].add(mt)
        for d, s in seen.items():
            if len(s) > 1:
                raise InputError(f"dataset {d!r} has several metrics", file=self.source, column="metric",
                                 value=sorted(s), expected="one metric per dataset")
            out[d] = next(iter(s)) if s else None
        return out

    def _group_per_dataset(self, ds: np.ndarray | None, mask: np.ndarray,
                           dnames: list[str]) -> tuple[str | None, ...] | None:
        if self.group is None or ds is None:
            return None
        seen: dict[str, set[str | None]] = {d: set() for d in dnames}
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
        for d in self.datasets:
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
            ch = choose_split if choose_split not in (None, "auto") else "Dev"
            sc = score_split if score_split not in (None, "auto") else "Test"
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


def _used(codes: np.ndarray, values: Sequence[Any]) -> list[Any]:
    """The distinct values that some row holds, in ``values`` order (duplicates possible after
    a rename)."""
    seen = np.zeros(len(values), dtype=bool)
    seen[codes] = True
    return [v for v, s in zip(values, seen.tolist(), strict=True) if s]


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
        total: np.ndarray = np.bincount(cells, weights=values, minlength=size).astype(float, copy=False)
        count = np.bincount(cells, minlength=size)
        with np.errstate(invalid="ignore", divide="ignore"):
            np.divide(total, count, out=total)  # in place; 0/0 = NaN: never run
        return total
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
        return check_direction(direction)
    if metric is not None and metric in direction:
        return check_direction(direction[metric])
    if "*" in direction:
        return check_direction(direction["*"])
    return infer_direction(metric)


_MODEL_PREFIX = re.compile(r"^(meta-)")


def loose_key(value: Any, axis: str) -> str:
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
