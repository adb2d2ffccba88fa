"""Reading task data files into raw rows: JSONL, JSON, CSV, TSV, Parquet, ``save_to_disk``, hub.

Raw rows keep the source's own column names and each row's number in its file, so the column
mapping (:mod:`staytuned.tasks.columns`) can name the exact place of bad input. ``datasets`` and
``pyarrow`` are imported only for the formats that need them.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from staytuned._util.io import read_jsonl
from staytuned.errors import DependencyError, InputError

#: A source row before the column mapping: column name -> value.
RawRow = dict[str, Any]

DATA_SUFFIXES: tuple[str, ...] = (".jsonl", ".json", ".csv", ".tsv", ".parquet")


@dataclass
class RawSplit:
    """Raw rows of one split (row number in the source, row) plus where they came from."""

    rows: list[tuple[int, RawRow]]
    origin: str
    class_names: dict[str, list[str]] = field(default_factory=dict)  # ClassLabel column -> names


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def _read_json(path: Path) -> list[tuple[int, RawRow]]:
    with path.open(encoding="utf-8") as fh:
        head = fh.read(4096).lstrip()
    if not head.startswith("["):
        return read_jsonl(path)  # .json files holding JSON Lines are common
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(
            f"malformed JSON: {exc.msg}", file=str(path), row=exc.lineno, expected="a JSON array of objects"
        ) from None
    out = []
    for i, obj in enumerate(data, start=1):
        if not isinstance(obj, dict):
            raise InputError(
                f"item {i} is a JSON {type(obj).__name__}, not an object",
                file=str(path),
                expected="a JSON array of objects",
            )
        out.append((i, obj))
    return out


def _read_csv(path: Path) -> list[tuple[int, RawRow]]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    out = []
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        if not reader.fieldnames:
            return []
        for row in reader:
            # Row number = the row's (first) physical line, header being line 1.
            out.append((reader.line_num, {k: v for k, v in row.items() if k is not None}))
    return out


def _read_parquet(path: Path) -> list[tuple[int, RawRow]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a core dependency
        raise DependencyError("pyarrow", "train", "Reading Parquet task files") from None
    table = pq.read_table(path)
    return [(i, r) for i, r in enumerate(table.to_pylist(), start=1)]


_READERS: dict[str, Callable[[Path], list[tuple[int, RawRow]]]] = {
    ".jsonl": read_jsonl,
    ".json": _read_json,
    ".csv": _read_csv,
    ".tsv": _read_csv,
    ".parquet": _read_parquet,
}


def read_file(path: Path) -> RawSplit:
    """All rows of one data file (suffix one of :data:`DATA_SUFFIXES`)."""
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise InputError(
            "unsupported file type", file=str(path), value=path.suffix, expected=", ".join(DATA_SUFFIXES)
        )
    return RawSplit(reader(path), str(path))


# --------------------------------------------------------------------------------------------
# Hugging Face datasets: save_to_disk folders and the hub
# --------------------------------------------------------------------------------------------


def is_saved_dataset(folder: Path) -> bool:
    """Whether ``folder`` was written by ``datasets``' ``save_to_disk``."""
    return (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()


#: Maps a dataset's own split name to the split it becomes (None: skip it, its rows unread).
SplitNamer = Callable[[str], str | None]


def _hf_splits(obj: Any, origin: str, split_of: SplitNamer) -> dict[str, RawSplit]:
    """Raw splits of a ``datasets.Dataset`` (one split, ``train``) or ``DatasetDict``."""
    import datasets

    items = {"train": obj} if isinstance(obj, datasets.Dataset) else dict(obj)
    out: dict[str, RawSplit] = {}
    for name, ds in items.items():
        split = split_of(name)
        if split is None:
            continue
        class_names = {col: list(f.names) for col, f in ds.features.items() if hasattr(f, "names")}
        rows = [(i, r) for i, r in enumerate(ds, start=1)]
        out[split] = RawSplit(rows, f"{origin} [{name}]", class_names)
    return out


def read_saved_dataset(folder: Path, split_of: SplitNamer) -> dict[str, RawSplit]:
    """The splits of a ``save_to_disk`` folder, named by ``split_of``."""
    import datasets

    try:
        obj = datasets.load_from_disk(str(folder))
    except Exception as exc:  # datasets raises many types for a broken folder
        raise InputError(f"cannot read the saved dataset: {exc}", file=str(folder)) from None
    return _hf_splits(obj, str(folder), split_of)


def read_hub(name: str, config: str | None, split_of: SplitNamer, *, expected: str) -> dict[str, RawSplit]:
    """The splits of hub dataset ``name`` (online only), named by ``split_of``.

    ``expected`` is what the InputError says would have been valid when loading fails (the
    caller knows which other sources were tried).
    """
    try:
        import datasets
    except ImportError:
        raise DependencyError("datasets", "train", f"Loading the hub dataset {name!r}") from None
    try:
        obj = datasets.load_dataset(name, config)
    except Exception as exc:  # offline, unknown id, gated, ...
        raise InputError(
            f"cannot load hub dataset {name!r}: {type(exc).__name__}: {exc}", value=name, expected=expected
        ) from None
    return _hf_splits(obj, f"hub:{name}", split_of)
