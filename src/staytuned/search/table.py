"""``results export``: the canonical results table from an Optuna storage (docs/CONTRACTS.md).

One row per finished :class:`~staytuned.search.records.TrialRecord` (ok, pruned or failed;
interrupted trials are left out since their retry is the real run): dataset, model, method, train_size,
seed, config_id, hp_<name>..., metric, score, score_test, status, runtime_s, versions (JSON),
plus metrics (JSON: every metric of the run), n_train, n_eval, trainer and precision (how the
trial ran: execution settings, not hyperparameters), train_tokens_per_s, peak_memory_mb, study,
trial_number and error (ignored by ``staytuned cbs``).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from staytuned._util.io import atomic_open, atomic_path
from staytuned.errors import InputError, StorageError

if TYPE_CHECKING:
    from staytuned.search.records import TrialRecord

FORMATS = (".csv", ".parquet", ".jsonl")
CELL_COLUMNS = ("dataset", "model", "method", "train_size", "seed", "config_id")
TAIL_COLUMNS = ("metric", "score", "score_test", "status", "runtime_s", "versions", "metrics",
                "n_train", "n_eval", "trainer", "precision", "train_tokens_per_s", "peak_memory_mb", "study",
                "trial_number", "error")


def collect_rows(storage_url: str, studies: list[str] | None = None) -> list[dict[str, Any]]:
    """Rows of the canonical table for the studies of a storage (all when ``studies`` is None)."""
    from staytuned.search.records import read_records
    from staytuned.search.storage import open_storage, study_names

    storage = open_storage(storage_url)
    names = study_names(storage_url)
    if studies:
        unknown = [s for s in studies if s not in names]
        if unknown:
            raise InputError("no such study in the storage", field="studies", value=unknown[0],
                             expected="one of " + ", ".join(names[:20]))
        names = studies
    return [_row(r) for name in names for r in read_records(storage, name) if r.finished]


def _row(r: TrialRecord) -> dict[str, Any]:
    row: dict[str, Any] = {"dataset": r.task, "model": r.model, "method": r.method,
                           "train_size": r.train_size, "seed": r.seed, "config_id": r.config_id}
    row.update({f"hp_{k}": v for k, v in r.config.items() if k != "method"})
    row.update({
        "metric": r.metric, "score": r.score, "score_test": r.score_test, "status": r.status,
        "runtime_s": r.runtime_s, "versions": json.dumps(r.versions, sort_keys=True),
        "metrics": json.dumps(r.metrics, sort_keys=True), "n_train": r.n_train,
        "n_eval": r.n_eval, "trainer": r.execution.get("trainer"), "precision": r.execution.get("precision"),
        "train_tokens_per_s": r.train_tokens_per_s,
        "peak_memory_mb": r.peak_memory_mb, "study": r.study, "trial_number": r.number,
        "error": r.error,
    })
    return row


def columns_of(rows: list[dict[str, Any]]) -> list[str]:
    hps = sorted({k for r in rows for k in r if k.startswith("hp_")})
    return [*CELL_COLUMNS, *hps, *TAIL_COLUMNS]


def export_results(storage_url: str, out: str | Path, studies: list[str] | None = None) -> int:
    """Write the table to ``out`` (.csv, .parquet or .jsonl); returns the number of rows."""
    path = Path(out)
    if path.suffix not in FORMATS:
        raise InputError("unknown output format", field="out", value=str(out),
                         expected="a path ending in " + ", ".join(FORMATS))
    rows = collect_rows(storage_url, studies)
    if not rows:
        raise StorageError(f"no finished trials in {storage_url}: nothing to export")
    cols = columns_of(rows)
    # atomic: an interrupted export never leaves half a table
    if path.suffix == ".csv":
        with atomic_open(path, newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=cols)
            writer.writeheader()
            for r in rows:
                writer.writerow({c: _cell(r.get(c)) for c in cols})
    elif path.suffix == ".jsonl":
        with atomic_open(path) as fh:
            for r in rows:
                fh.write(json.dumps({c: _json(r.get(c)) for c in cols}) + "\n")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        data = {c: [_json(r.get(c)) for r in rows] for c in cols}
        with atomic_path(path) as tmp:
            pq.write_table(pa.table(data), tmp, compression=None)
    return len(rows)


def _cell(v: Any) -> Any:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    return v


def _json(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
