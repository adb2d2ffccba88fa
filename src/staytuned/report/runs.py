"""Report input: the runs of Optuna studies or of a results table, in one shape.

A :class:`Run` is one trial (or one results-table row). Everything the report shows is computed
from a :class:`ReportInput`, so studies and tables go through the same code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from staytuned.errors import InputError

TABLE_SUFFIXES = (".csv", ".parquet", ".pq", ".jsonl", ".ndjson", ".json", ".gz")


@dataclass(frozen=True)
class Run:
    """One trial or table row. ``score`` is NaN unless the run finished ok."""

    dataset: str
    config_id: str
    params: dict[str, Any]
    score: float
    status: str  # "ok" | "failed" | "pruned" (a TrialStatus of a finished trial)
    study: str | None = None
    number: int | None = None
    values: tuple[float, ...] | None = None  # all objectives of a multi-objective trial
    error: str | None = None
    model: str | None = None
    method: str | None = None
    train_size: str | None = None
    kind: str = "tune"  # the study's kind: "tune" | "grid" | "decode" | "unknown"
    metrics: dict[str, Any] = field(default_factory=dict)  # trial user_attrs["metrics"]


@dataclass(frozen=True)
class StudyInfo:
    """What the report needs to know about one Optuna study."""

    name: str
    kind: str  # "tune" | "grid" | "decode" | "unknown"
    directions: tuple[str, ...]  # "max"/"min" per objective
    objective_names: tuple[str, ...]
    n_trials: int
    states: dict[str, int]


@dataclass(frozen=True)
class ReportInput:
    """Runs plus where they came from. ``table`` is the CBS view (a ResultsTable) when available."""

    source: str
    kind: str  # "storage" | "table"
    runs: tuple[Run, ...]
    studies: tuple[StudyInfo, ...] = ()
    directions: dict[str, str] = field(default_factory=dict)  # dataset -> "max"/"min"
    table: Any = None  # staytuned.results.ResultsTable
    notes: tuple[str, ...] = ()

    @property
    def datasets(self) -> list[str]:
        from staytuned.results import natural_key

        return sorted({r.dataset for r in self.runs}, key=natural_key)


def is_table_path(ref: str) -> bool:
    """A results-table file (by suffix) rather than a storage URL or ``.db`` file."""
    return "://" not in ref and Path(ref).suffix.lower() in TABLE_SUFFIXES


# --------------------------------------------------------------------------- results tables
def from_table(path: str | Path, columns: Any = None, direction: str | None = None) -> ReportInput:
    """Runs of a results table (any format :func:`staytuned.results.load_results` reads).

    ``direction`` ("max"/"min") applies to every dataset; by default it follows the metric
    name (loss-like = min), as in ``staytuned cbs``.
    """
    from staytuned.results import load_results, read_columns  # the table's own reader, for errors

    table = load_results(path, columns)
    errors = _error_column(Path(path), read_columns)
    metric_dirs = _table_directions(table)
    if direction is not None:
        if direction not in ("max", "min"):
            raise InputError("unknown direction", field="direction", value=direction, expected="max or min")
        metric_dirs = {d: direction for d in metric_dirs}
    runs = []
    for i in range(len(table)):
        cid = str(table.config[i])
        failed = bool(table.failed[i])
        status = "failed" if failed else "ok"
        runs.append(Run(
            dataset=str(table.dataset[i]),
            config_id=cid,
            params=dict(table.hps.get(cid, {})),
            score=math.nan if failed else float(table.score[i]),
            status=status,
            number=int(table.rows[i]) if table.rows is not None else i,
            error=errors[i] if errors is not None else None,
            model=_at(table.model, i), method=_at(table.method, i), train_size=_at(table.train_size, i),
        ))
    return ReportInput(source=str(path), kind="table", runs=tuple(runs), directions=metric_dirs,
                       table=table, notes=tuple(table.notes))


def _at(col: Any, i: int) -> str | None:
    return None if col is None or col[i] is None else str(col[i])


def _table_directions(table: Any) -> dict[str, str]:
    from staytuned.results import infer_direction

    out: dict[str, str] = {}
    metrics = table.metric.tolist() if table.metric is not None else [None] * len(table)
    for d, m in zip(table.dataset.tolist(), metrics, strict=True):
        out.setdefault(str(d), infer_direction(m))
    return out


def _error_column(path: Path, reader: Any) -> list[str | None] | None:
    """The ``error`` column, which the results loader ignores on purpose (it is not a score)."""
    cols, data, _ = reader(path)
    if "error" not in cols:
        return None
    return [None if v is None or (isinstance(v, float) and math.isnan(v)) or str(v).strip() == ""
            else str(v) for v in data["error"]]


# --------------------------------------------------------------------------- Optuna storages
def from_storage(storage: str, study_name: str | None = None) -> ReportInput:
    """Runs of every study in ``storage`` (or of ``study_name``)."""
    import optuna

    from staytuned.errors import StorageError
    from staytuned.export.sources import open_existing_storage

    storage_obj, url = open_existing_storage(storage)
    try:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage=storage_obj, include_best_trial=False)]
    except Exception as exc:  # sqlalchemy errors: a file that is not an Optuna database
        raise StorageError(f"cannot read studies from {storage}: {str(exc).splitlines()[0]}") from None
    if study_name is not None:
        if study_name not in names:
            raise InputError("no such study", field="study", value=study_name,
                             expected=", ".join(names) or "a storage with a study")
        names = [study_name]
    if not names:
        raise InputError("the storage holds no study", file=storage,
                         expected="a storage written by staytuned tune/grid/decode")
    runs: list[Run] = []
    infos: list[StudyInfo] = []
    directions: dict[str, str] = {}
    for name in names:
        study = optuna.load_study(study_name=name, storage=storage_obj)
        info, study_runs = _study_runs(study)
        infos.append(info)
        runs.extend(study_runs)
        for r in study_runs:
            directions.setdefault(r.dataset, info.directions[0])
    table = _table_from_runs(runs, url)
    from staytuned.search.storage import redact

    return ReportInput(source=redact(storage), kind="storage", runs=tuple(runs), studies=tuple(infos),
                       directions=directions, table=table)


def _study_runs(study: Any) -> tuple[StudyInfo, list[Run]]:
    from staytuned.search.records import study_records

    attrs = study.user_attrs
    kind = str(attrs.get("kind", "unknown"))
    directions = tuple("max" if d.name == "MAXIMIZE" else "min" for d in study.directions)
    names = tuple(study.metric_names) if getattr(study, "metric_names", None) else ()
    if len(names) != len(directions):
        if len(directions) == 1:
            names = (str(attrs.get("metric") or "score"),)
        else:
            names = tuple(f"objective {i}" for i in range(len(directions)))
    states: dict[str, int] = {}
    runs: list[Run] = []
    for rec in study_records(study):
        states[rec.state] = states.get(rec.state, 0) + 1
        if not rec.finished:
            continue  # running, or interrupted: its retry is the run that counts
        runs.append(Run(
            dataset=rec.task or study.study_name, config_id=rec.config_id, params=dict(rec.config),
            score=rec.score if rec.status == "ok" and rec.score is not None else math.nan,
            status=rec.status, study=study.study_name, number=rec.number, values=rec.values,
            error=rec.error, model=rec.model, method=rec.method,
            train_size=_opt(rec.train_size), kind=kind, metrics=dict(rec.metrics),
        ))
    info = StudyInfo(name=study.study_name, kind=kind, directions=directions,
                     objective_names=names, n_trials=sum(states.values()), states=states)
    return info, runs


def _opt(v: Any) -> str | None:
    return None if v is None else str(v)


def _table_from_runs(runs: list[Run], source: str) -> Any:
    """The canonical results table of single-objective runs, for the CBS sections (None if empty)."""
    from staytuned.results import from_records

    records = []
    for r in runs:
        if (r.values is not None and len(r.values) > 1) or r.kind == "decode":
            continue  # decoding configs are another space; multi-objective trials have no single score
        rec: dict[str, Any] = {"dataset": r.dataset, "config_id": r.config_id, "status": r.status,
                               "score": None if r.status != "ok" else r.score}
        for axis in ("model", "method", "train_size"):
            if getattr(r, axis) is not None:
                rec[axis] = getattr(r, axis)
        rec.update({f"hp_{k}": v for k, v in r.params.items()})
        records.append(rec)
    if not records:
        return None
    return from_records(records, source=source)
