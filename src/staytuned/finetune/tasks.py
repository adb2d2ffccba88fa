"""Tasks: a dataset with a task type, its primary metric and train/validation/test rows.

A :class:`Task` holds plain row dicts with canonical keys per task type:

- classification: ``{"text": str, "label": str}``
- summarization:  ``{"document": str, "summary": str}``
- qa (contextual question answering): ``{"context": str, "question": str, "answers": [str, ...]}``

:func:`load_task` reads a bundled short name (``sst2``, ``trec``, ``banking77``, ``scitldr``,
``squad``), a folder of split files, a single JSONL/JSON/CSV/TSV/Parquet file, a Hugging Face
``datasets`` folder written by ``save_to_disk``, or (online) a hub dataset id.

This module is light: no torch, no pandas; ``datasets``/``pyarrow`` are imported only for the
formats that need them.
"""

from __future__ import annotations

import csv
import json
import os
import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from staytuned.errors import InputError

TaskType = Literal["classification", "summarization", "qa"]

TASK_TYPES: tuple[str, ...] = ("classification", "summarization", "qa")
SPLITS: tuple[str, ...] = ("train", "validation", "test")

#: Canonical row keys per task type.
CANONICAL_KEYS: dict[str, tuple[str, ...]] = {
    "classification": ("text", "label"),
    "summarization": ("document", "summary"),
    "qa": ("context", "question", "answers"),
}

#: Optional keys kept when present: a qa row's ``title`` names its article, so carving a split
#: keeps whole articles on one side (not only whole paragraphs).
OPTIONAL_KEYS: dict[str, tuple[str, ...]] = {"qa": ("title",)}

#: Primary metric per task type (all maximised). ROUGE-L (LCS-based F-measure, stemmed) is the
#: primary summarization metric, the ROUGE-L style score used in the paper.
PRIMARY_METRIC: dict[str, str] = {
    "classification": "accuracy",
    "summarization": "rougeL",
    "qa": "f1",
}

#: Column names recognised without a mapping when the canonical key is absent (first match wins).
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "text": ("sentence", "content", "utterance", "tweet"),
    "label": ("labels", "category", "intent", "class"),
    "document": ("article", "abstract", "dialogue"),
    "summary": ("highlights", "tldr"),
    "context": ("passage", "paragraph"),
    "question": ("query",),
    "answers": ("answer",),
}

#: File names recognised as splits inside a dataset folder (first match wins).
SPLIT_FILE_STEMS: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "validation": ("validation", "valid", "val", "dev"),
    "test": ("test",),
}
DATA_SUFFIXES: tuple[str, ...] = (".jsonl", ".json", ".csv", ".tsv", ".parquet")

#: Short names of datasets in ../shared/datasets that are NOT bundled, with the reason.
NOT_BUNDLED: dict[str, str] = {
    "tweeteval_emotion": "Twitter's terms restrict redistributing tweet text",
    "tweeteval_irony": "Twitter's terms restrict redistributing tweet text",
    "tweeteval_hate": "Twitter's terms restrict redistributing tweet text",
    "tweeteval_offensive": "Twitter's terms restrict redistributing tweet text",
    "xsum_sample": "BBC article text has no open license",
}

#: Environment variable naming a folder of dataset folders; short names are also looked up there.
DATASETS_ENV = "STAYTUNED_DATASETS"

Row = dict[str, Any]


# --------------------------------------------------------------------------------------------
# Task
# --------------------------------------------------------------------------------------------


@dataclass
class Task:
    """A dataset with a task type and primary metric.

    ``splits`` maps split name (``train``/``validation``/``test``) to a list of canonical row
    dicts; a split absent from the source (and not carved) is absent from the dict.
    ``template`` optionally overrides the prompt template (see :mod:`staytuned.finetune.templates`).
    ``notes`` records how splits were derived (carving, dropped unlabeled splits, ...).
    """

    name: str
    type: str
    splits: dict[str, list[Row]]
    labels: list[str] = field(default_factory=list)
    metric: str = ""
    direction: str = "max"
    source: str = ""
    template: str | None = None
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.type not in TASK_TYPES:
            raise InputError(
                "unknown task type", field="type", value=self.type, expected=" | ".join(TASK_TYPES)
            )
        if not self.metric:
            self.metric = PRIMARY_METRIC[self.type]
        if self.template is not None:
            # Imported here: templates imports this module for the Task type.
            from staytuned.finetune.templates import validate_template

            validate_template(self.type, self.template)

    # -- access ----------------------------------------------------------------------------

    def has_split(self, split: str) -> bool:
        return bool(self.splits.get(split))

    def split(self, split: str) -> list[Row]:
        """All rows of ``split``; InputError if the task has no such (non-empty) split."""
        if split not in SPLITS:
            raise InputError("unknown split", field="split", value=split, expected=" | ".join(SPLITS))
        rows = self.splits.get(split)
        if not rows:
            have = [s for s in SPLITS if self.splits.get(s)]
            raise InputError(
                f"task {self.name!r} has no {split} split",
                field="split",
                value=split,
                expected=f"one of {have}" if have else "a task with data",
            )
        return rows

    def train_rows(self, size: int | None = None, seed: int = 0) -> list[Row]:
        """``size`` training rows (None = all), stratified by label for classification.

        Deterministic for a given ``seed``; with the same seed a smaller size is (almost always)
        a subset of a larger one, so train size behaves like an axis.
        """
        return subsample(self.split("train"), size, seed=seed, stratify_by=self._stratify_key)

    def eval_rows(self, split: str = "validation", size: int | None = None, seed: int = 0) -> list[Row]:
        """``size`` rows of an evaluation split (None = all, in source order)."""
        return subsample(self.split(split), size, seed=seed, stratify_by=self._stratify_key)

    @property
    def _stratify_key(self) -> str | None:
        return "label" if self.type == "classification" else None

    def sizes(self) -> dict[str, int]:
        return {s: len(self.splits.get(s) or []) for s in SPLITS}

    def references(self, rows: Iterable[Row]) -> list[Any]:
        """Gold values for :func:`staytuned.finetune.metrics.compute_metrics`."""
        key = {"classification": "label", "summarization": "summary", "qa": "answers"}[self.type]
        return [r[key] for r in rows]

    def summary(self) -> dict[str, Any]:
        """A JSON-able description (used by ``staytuned tasks``)."""
        return {
            "name": self.name,
            "type": self.type,
            "metric": self.metric,
            "direction": self.direction,
            "n_labels": len(self.labels) if self.type == "classification" else None,
            "splits": self.sizes(),
            "source": self.source,
            "notes": list(self.notes),
        }


# --------------------------------------------------------------------------------------------
# Sampling and carving
# --------------------------------------------------------------------------------------------


def _check_size(n: int | None) -> None:
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise InputError("sample size must be a positive integer or None (all)", field="size", value=n)


def _proportional_quotas(counts: Mapping[str, int], n: int) -> dict[str, int]:
    """Split ``n`` over groups proportionally to ``counts`` (largest remainder, ties by name).

    Every group gets at least one row when ``n`` allows it, so rare labels are not lost in small
    samples.
    """
    total = sum(counts.values())
    exact = {k: n * c / total for k, c in counts.items()}
    quota = {k: int(v) for k, v in exact.items()}
    rest = n - sum(quota.values())
    for k in sorted(counts, key=lambda k: (-(exact[k] - quota[k]), k))[:rest]:
        quota[k] += 1
    if n >= len(counts):
        for k in sorted(counts):
            if quota[k] == 0:
                # Take the row from the group with the most rows to spare.
                donor = max(sorted(quota), key=lambda d: quota[d] - 1)
                quota[donor] -= 1
                quota[k] = 1
    return quota


def subsample(
    rows: Sequence[Row], n: int | None, seed: int = 0, stratify_by: str | None = "label"
) -> list[Row]:
    """Deterministic sample of ``n`` rows (None or n >= len(rows): all rows, unchanged).

    With ``stratify_by`` (a key present in every row) the sample keeps the label proportions
    (largest-remainder allocation, at least one row per label when n >= number of labels).
    Each group's rows are shuffled once with ``random.Random(seed)`` and the first rows taken, so
    for a fixed seed smaller samples are nested in larger ones up to rounding of the quotas.
    Rows come back in source order.
    """
    _check_size(n)
    if n is None or n >= len(rows):
        return list(rows)
    rng = random.Random(seed)
    if stratify_by and rows and all(stratify_by in r for r in rows):
        groups: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(rows):
            groups[str(r[stratify_by])].append(i)
        quota = _proportional_quotas({k: len(v) for k, v in groups.items()}, n)
        chosen: list[int] = []
        for k in sorted(groups):
            idx = list(groups[k])
            rng.shuffle(idx)
            chosen.extend(idx[: quota[k]])
    else:
        idx = list(range(len(rows)))
        rng.shuffle(idx)
        chosen = idx[:n]
    return [rows[i] for i in sorted(chosen)]


def split_off(
    rows: Sequence[Row],
    fraction: float,
    seed: int = 0,
    *,
    stratify_by: str | None = None,
    group_by: str | None = None,
) -> tuple[list[Row], list[Row]]:
    """Split ``rows`` into (kept, carved) with about ``fraction`` of the rows carved.

    - ``stratify_by``: per label (labels in sorted order, one shared ``random.Random(seed)``),
      ``round(fraction * n_label)`` rows are carved, as in ``../shared/datasets``.
    - ``group_by``: whole groups (e.g. all questions on one QA context) go to one side, so no
      context appears in both; groups are shuffled with ``random.Random(seed)`` and taken until
      ``fraction`` of the rows is reached.
    At least one row is carved (and one kept) when there are two rows or more. Both parts keep
    source order.
    """
    if not 0.0 <= fraction < 1.0:
        raise InputError("fraction must be in [0, 1)", field="fraction", value=fraction)
    n = len(rows)
    if n < 2 or fraction == 0.0:
        return list(rows), []
    rng = random.Random(seed)
    carved: set[int] = set()
    if group_by is not None:
        groups: dict[Any, list[int]] = {}
        for i, r in enumerate(rows):
            groups.setdefault(r[group_by], []).append(i)
        order = list(groups)
        rng.shuffle(order)
        target = max(1, round(fraction * n))
        for g in order:
            if len(carved) >= target:
                break
            if len(groups) > 1 and len(carved) + len(groups[g]) >= n:
                continue  # never carve everything
            carved.update(groups[g])
    elif stratify_by is not None:
        by_label: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(rows):
            by_label[str(r[stratify_by])].append(i)
        for label in sorted(by_label):
            idx = list(by_label[label])
            rng.shuffle(idx)
            carved.update(idx[: round(fraction * len(idx))])
    else:
        idx = list(range(n))
        rng.shuffle(idx)
        carved.update(idx[: round(fraction * n)])
    if not carved:
        carved.add(rng.randrange(n))
    if len(carved) == n:
        carved.discard(max(carved))
    kept = [r for i, r in enumerate(rows) if i not in carved]
    return kept, [r for i, r in enumerate(rows) if i in carved]


# --------------------------------------------------------------------------------------------
# Bundled datasets
# --------------------------------------------------------------------------------------------


def bundled_dir() -> Path:
    """The folder holding the bundled dataset subsets (``staytuned/data``)."""
    return Path(str(resources.files("staytuned").joinpath("data")))


def bundled_manifest() -> dict[str, dict[str, Any]]:
    """``data/manifest.json``: per bundled task its type, metric, labels, sizes, license."""
    path = bundled_dir() / "manifest.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))["tasks"]
    except FileNotFoundError:
        return {}


def bundled_names() -> list[str]:
    return sorted(bundled_manifest())


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------


def _read_jsonl(path: Path) -> list[tuple[int, Row]]:
    out: list[tuple[int, Row]] = []
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(
                    f"malformed JSON line: {exc.msg} at column {exc.colno}",
                    file=str(path),
                    row=line_no,
                    expected="one JSON object per line",
                ) from None
            if not isinstance(obj, dict):
                raise InputError(
                    f"line is a JSON {type(obj).__name__}, not an object",
                    file=str(path),
                    row=line_no,
                    expected="one JSON object per line",
                )
            out.append((line_no, obj))
    return out


def _read_json(path: Path) -> list[tuple[int, Row]]:
    with path.open(encoding="utf-8") as fh:
        head = fh.read(4096).lstrip()
    if not head.startswith("["):
        return _read_jsonl(path)  # .json files holding JSON Lines are common
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


def _read_csv(path: Path) -> list[tuple[int, Row]]:
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


def _read_parquet(path: Path) -> list[tuple[int, Row]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a core dependency
        from staytuned.errors import DependencyError

        raise DependencyError("pyarrow", "train", "Reading Parquet task files") from None
    table = pq.read_table(path)
    return [(i, r) for i, r in enumerate(table.to_pylist(), start=1)]


_READERS: dict[str, Callable[[Path], list[tuple[int, Row]]]] = {
    ".jsonl": _read_jsonl,
    ".json": _read_json,
    ".csv": _read_csv,
    ".tsv": _read_csv,
    ".parquet": _read_parquet,
}


def _read_file(path: Path) -> list[tuple[int, Row]]:
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise InputError(
            "unsupported file type", file=str(path), value=path.suffix, expected=", ".join(DATA_SUFFIXES)
        )
    return reader(path)


# --------------------------------------------------------------------------------------------
# Converting raw rows to canonical rows
# --------------------------------------------------------------------------------------------


@dataclass
class _RawSplit:
    """Raw rows of one split plus where they came from (for error messages)."""

    rows: list[tuple[int, Row]]
    origin: str
    class_names: dict[str, list[str]] = field(default_factory=dict)  # ClassLabel column -> names


def _resolve_columns(
    present: Iterable[str], columns: Mapping[str, str] | None, origin: str
) -> dict[str, str]:
    """Source-column -> canonical-key mapping: the user's mapping plus recognised aliases."""
    present = list(present)
    mapping = dict(columns or {})
    known = sorted({k for keys in (*CANONICAL_KEYS.values(), *OPTIONAL_KEYS.values()) for k in keys})
    for src, key in mapping.items():
        if key not in known:
            raise InputError(
                "column mapping targets an unknown key", field="columns", value=f"{src} -> {key}",
                expected=f"source column -> one of {known}",
            )
        if src not in present:
            raise InputError(
                "column in the column mapping not found",
                file=origin,
                column=src,
                expected=f"one of the columns {present}",
            )
    targets = set(mapping.values())
    for key, aliases in COLUMN_ALIASES.items():
        if key in targets:
            continue
        if key in present and key not in mapping:
            mapping[key] = key
            targets.add(key)
            continue
        for alias in aliases:
            if alias in present and alias not in mapping:
                mapping[alias] = key
                targets.add(key)
                break
    return mapping


def _infer_type(keys: set[str], origin: str, present: Sequence[str]) -> str:
    if {"context", "question", "answers"} <= keys:
        return "qa"
    if {"document", "summary"} <= keys:
        return "summarization"
    if {"text", "label"} <= keys:
        return "classification"
    raise InputError(
        "cannot infer the task type from the columns",
        file=origin,
        value=sorted(present),
        expected="columns text+label (classification), document+summary (summarization) or "
        "context+question+answers (qa); pass type=... and columns={'source_column': 'key'}",
    )


def _as_answers(value: Any, origin: str, row: int) -> list[str]:
    if isinstance(value, Mapping) and "text" in value:  # SQuAD on the hub: {"text": [...], ...}
        value = value["text"]
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):  # a JSON list inside a CSV cell
            try:
                value = json.loads(stripped)
            except json.JSONDecodeError:
                value = [value]
        else:
            value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(a, str) for a in value):
        raise InputError(
            "answers must be a list of strings",
            file=origin,
            row=row,
            column="answers",
            value=value,
            expected='["answer", ...] (or one string, or {"text": [...]})',
        )
    answers = [a for a in value if a.strip()]
    if not answers:
        raise InputError(
            "no non-empty answer", file=origin, row=row, column="answers", expected="at least one answer"
        )
    return answers


def _as_label(value: Any, names: Sequence[str] | None, origin: str, row: int) -> str | None:
    """Label as a readable string; None for an unlabeled row (hub convention: -1)."""
    if value is None:
        raise InputError("label missing", file=origin, row=row, column="label", expected="a label")
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int) or (isinstance(value, float) and float(value).is_integer()):
        i = int(value)
        if names is not None:
            if i < 0:
                return None
            if i >= len(names):
                raise InputError(
                    "label index out of range",
                    file=origin,
                    row=row,
                    column="label",
                    value=value,
                    expected=f"0..{len(names) - 1} (labels {list(names)})",
                )
            return names[i]
        return str(i)
    text = str(value).strip()
    if not text:
        raise InputError("label missing (empty)", file=origin, row=row, column="label", expected="a label")
    return text


def _canonical_rows(
    raw: _RawSplit,
    task_type: str | None,
    columns: Mapping[str, str] | None,
    label_names: Sequence[str] | None,
) -> tuple[str, list[Row], int, list[str] | None]:
    """(task type, canonical rows, number of unlabeled rows, label names used) for one split."""
    if not raw.rows:
        raise InputError("empty split: no rows", file=raw.origin, expected="at least one row")
    present: list[str] = []
    for _, r in raw.rows[:50]:  # columns of the first rows (CSV/Parquet rows all share them)
        present.extend(k for k in r if k not in present)
    mapping = _resolve_columns(present, columns, raw.origin)
    keys = set(mapping.values())
    kind = task_type or _infer_type(keys, raw.origin, present)
    expected = CANONICAL_KEYS[kind]
    by_key = {v: k for k, v in mapping.items()}
    names = label_names if label_names is not None else raw.class_names.get(by_key.get("label", "label"))
    out: list[Row] = []
    unlabeled = 0
    for row_no, r in raw.rows:
        canon: Row = {}
        for key in expected:
            src = by_key.get(key, key)
            if src not in r:
                raise InputError(
                    f"missing column for {key!r}",
                    file=raw.origin,
                    row=row_no,
                    column=src,
                    expected=f"keys {list(expected)} for a {kind} task (found {sorted(r)}); "
                    "map columns with columns={'source_column': 'key'}",
                )
            value = r[src]
            if key == "answers":
                canon[key] = _as_answers(value, raw.origin, row_no)
            elif key == "label":
                canon[key] = _as_label(value, names, raw.origin, row_no)
            else:
                if value is None or not str(value).strip():
                    raise InputError(
                        "empty value", file=raw.origin, row=row_no, column=src, expected=f"a non-empty {key}"
                    )
                canon[key] = str(value)
        for key in OPTIONAL_KEYS.get(kind, ()):
            value = r.get(by_key.get(key, key))
            if value is not None and str(value).strip():
                canon[key] = str(value)
        if canon.get("label", "") is None:
            unlabeled += 1
        out.append(canon)
    return kind, out, unlabeled, (list(names) if names is not None else None)


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------


def _find_split_files(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for split, stems in SPLIT_FILE_STEMS.items():
        for stem in stems:
            for suffix in DATA_SUFFIXES:
                p = folder / f"{stem}{suffix}"
                if p.is_file():
                    found.setdefault(split, p)
    return found


def _is_saved_dataset(folder: Path) -> bool:
    return (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()


def _raw_from_hf(obj: Any, origin: str) -> dict[str, _RawSplit]:
    """Raw splits from a ``datasets.Dataset`` or ``DatasetDict``."""
    import datasets

    if isinstance(obj, datasets.Dataset):
        items = {"train": obj}
    else:
        items = dict(obj)
    out: dict[str, _RawSplit] = {}
    for name, ds in items.items():
        split = _normalise_split_name(name)
        if split is None:
            continue
        class_names = {col: list(f.names) for col, f in ds.features.items() if hasattr(f, "names")}
        rows = [(i, r) for i, r in enumerate(ds, start=1)]
        out[split] = _RawSplit(rows, f"{origin} [{name}]", class_names)
    return out


def _normalise_split_name(name: str) -> str | None:
    for split, stems in SPLIT_FILE_STEMS.items():
        if name in stems:
            return split
    return None


def _raw_from_folder(folder: Path) -> dict[str, _RawSplit]:
    if _is_saved_dataset(folder):
        import datasets

        try:
            obj = datasets.load_from_disk(str(folder))
        except Exception as exc:  # datasets raises many types for a broken folder
            raise InputError(f"cannot read the saved dataset: {exc}", file=str(folder)) from None
        return _raw_from_hf(obj, str(folder))
    files = _find_split_files(folder)
    if not files:
        data_files = sorted(p for p in folder.iterdir() if p.suffix.lower() in DATA_SUFFIXES)
        if len(data_files) == 1:
            return _raw_from_file(data_files[0])
        raise InputError(
            "no split files found in the folder",
            file=str(folder),
            expected="train/validation/test files (.jsonl, .json, .csv, .tsv, .parquet; "
            "validation may be named valid/val/dev), a single data file, "
            "or a datasets save_to_disk folder",
        )
    return {split: _RawSplit(_read_file(p), str(p)) for split, p in files.items()}


def _raw_from_file(path: Path) -> dict[str, _RawSplit]:
    return {"train": _RawSplit(_read_file(path), str(path))}


def _raw_from_hub(name: str, config: str | None) -> dict[str, _RawSplit]:
    """A dataset from the Hugging Face hub (online users only; never needed by the tests)."""
    try:
        import datasets
    except ImportError:
        from staytuned.errors import DependencyError

        raise DependencyError("datasets", "train", f"Loading the hub dataset {name!r}") from None
    try:
        obj = datasets.load_dataset(name, config)
    except Exception as exc:  # offline, unknown id, gated, ...
        raise InputError(
            f"cannot load hub dataset {name!r}: {type(exc).__name__}: {exc}",
            value=name,
            expected="a bundled name ("
            + ", ".join(bundled_names())
            + "), an existing file or folder, or a reachable hub dataset id",
        ) from None
    return _raw_from_hf(obj, f"hub:{name}")


def _unknown_name(name: str) -> InputError:
    hint = ""
    if name in NOT_BUNDLED:
        hint = (
            f" ({name} is not bundled: {NOT_BUNDLED[name]}; pass its folder, e.g. "
            f"../shared/datasets/{name}, or set {DATASETS_ENV} to the folder holding it)"
        )
    return InputError(
        f"unknown task {name!r}: not a bundled name and no such file or folder{hint}",
        value=name,
        expected="a bundled name ("
        + ", ".join(bundled_names())
        + "), a path to a file or folder, or a hub id like 'hf:owner/name'",
    )


# --------------------------------------------------------------------------------------------
# load_task
# --------------------------------------------------------------------------------------------


def load_task(
    name_or_path: str | os.PathLike[str],
    *,
    type: str | None = None,  # noqa: A002 - the natural name of the field
    columns: Mapping[str, str] | None = None,
    validation_fraction: float = 0.1,
    train_fraction: float = 0.5,
    seed: int = 0,
    name: str | None = None,
    labels: Sequence[str] | None = None,
    template: str | None = None,
    hub_config: str | None = None,
) -> Task:
    """Load a task.

    ``name_or_path`` is, in order of lookup: a bundled short name (see :func:`bundled_names`);
    an existing folder (split files ``train``/``validation``|``valid``|``val``|``dev``/``test``
    with suffix .jsonl/.json/.csv/.tsv/.parquet, a single data file, or a ``save_to_disk``
    folder); an existing file (all rows are training rows); a folder named ``name_or_path``
    inside ``$STAYTUNED_DATASETS``; a hub id written ``hf:name`` (or ``hf:name:config``) or
    ``owner/name`` (online only: the bare form is not tried when ``HF_HUB_OFFLINE`` or
    ``HF_DATASETS_OFFLINE`` is set, so a mistyped relative path fails fast).

    - ``type``: classification | summarization | qa; inferred from the columns when None.
    - ``columns``: source column -> canonical key, e.g. ``{"sentence": "text"}``. Without it the
      canonical keys and a few common aliases (:data:`COLUMN_ALIASES`) are recognised.
    - Without a validation split, ``validation_fraction`` of train is carved with ``seed``
      (stratified by label for classification; for qa grouped by article when every row has a
      ``title``, else by context).
    - Without a train split but with validation and test (SQuAD dev style), ``train_fraction``
      of validation becomes train the same way (grouped by article or context for qa, so no paragraph is
      in both).
    - ``labels``: the label names (fixes their order; maps integer labels to names).
    - ``template``: prompt template override, validated now.
    """
    key = str(name_or_path)
    if isinstance(name_or_path, str) and key in bundled_manifest():
        task = _load_folder_task(bundled_dir() / key, key, type, columns, 0.0, 0.0, seed, labels, template)
        task.source = f"bundled:{key}"
        task.notes.insert(0, "bundled subset; see staytuned/data/ATTRIBUTION.md")
        return task
    if key.startswith("hf:"):
        hub_id, _, cfg = key[3:].partition(":")
        raw = _raw_from_hub(hub_id, cfg or hub_config)
        return _build_task(
            raw, name or hub_id, key, type, columns, validation_fraction, train_fraction, seed, labels, template
        )
    path = Path(key).expanduser()
    if path.is_dir():
        return _load_folder_task(
            path, name or path.name, type, columns, validation_fraction, train_fraction, seed, labels, template
        )
    if path.is_file():
        raw = _raw_from_file(path)
        return _build_task(
            raw, name or path.stem, str(path), type, columns, validation_fraction, train_fraction, seed, labels, template
        )
    env_dir = os.environ.get(DATASETS_ENV)
    if env_dir and "/" not in key and (Path(env_dir) / key).is_dir():
        return _load_folder_task(
            Path(env_dir) / key, name or key, type, columns, validation_fraction, train_fraction, seed, labels, template
        )
    if isinstance(name_or_path, str) and _looks_like_hub_id(key) and not _offline():
        raw = _raw_from_hub(key, hub_config)
        return _build_task(
            raw, name or key, f"hf:{key}", type, columns, validation_fraction, train_fraction, seed, labels, template
        )
    if not isinstance(name_or_path, str) or "/" in key or os.sep in key or key.endswith(DATA_SUFFIXES):
        raise InputError("no such file or folder", file=key, expected="an existing task file or folder")
    raise _unknown_name(key)


_GROUPED = {"title": "grouped by article (title)", "context": "grouped by context"}


def _qa_group(rows: Sequence[Row]) -> str:
    """Carve qa rows by article when every row names one, else by paragraph (context)."""
    return "title" if rows and all("title" in r for r in rows) else "context"


def _looks_like_hub_id(key: str) -> bool:
    """``owner/name`` (one slash, no file suffix, not starting like a path)."""
    return (
        key.count("/") == 1
        and not key.startswith((".", "/", "~"))
        and not key.endswith(DATA_SUFFIXES)
        and all(part for part in key.split("/"))
    )


def _offline() -> bool:
    # A mistyped relative path must not hang on network retries where the hub is unreachable.
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _load_folder_task(
    folder: Path,
    name: str,
    task_type: str | None,
    columns: Mapping[str, str] | None,
    validation_fraction: float,
    train_fraction: float,
    seed: int,
    labels: Sequence[str] | None,
    template: str | None,
) -> Task:
    raw = _raw_from_folder(folder)
    return _build_task(
        raw, name, str(folder), task_type, columns, validation_fraction, train_fraction, seed, labels, template
    )


def _build_task(
    raw: dict[str, _RawSplit],
    name: str,
    source: str,
    task_type: str | None,
    columns: Mapping[str, str] | None,
    validation_fraction: float,
    train_fraction: float,
    seed: int,
    labels: Sequence[str] | None,
    template: str | None,
) -> Task:
    if task_type is not None and task_type not in TASK_TYPES:
        raise InputError("unknown task type", field="type", value=task_type, expected=" | ".join(TASK_TYPES))
    for frac_name, frac in (("validation_fraction", validation_fraction), ("train_fraction", train_fraction)):
        if not 0.0 <= frac < 1.0:
            raise InputError("fraction must be in [0, 1)", field=frac_name, value=frac)
    splits: dict[str, list[Row]] = {}
    notes: list[str] = []
    kind = task_type
    hf_names: list[str] | None = None
    for split in SPLITS:
        if split not in raw:
            continue
        split_kind, rows, unlabeled, names = _canonical_rows(raw[split], kind, columns, labels)
        if kind is None:
            kind = split_kind
        if unlabeled:
            if unlabeled < len(rows):
                raise InputError(
                    f"{unlabeled} of {len(rows)} rows have no label (-1)",
                    file=raw[split].origin,
                    column="label",
                    expected="every row labeled, or a wholly unlabeled split (which is dropped)",
                )
            notes.append(f"{split} split dropped: unlabeled (labels are -1)")
            continue
        splits[split] = rows
        if names is not None and labels is None and hf_names is None:
            hf_names = names
    assert kind is not None  # at least one split was read, or _canonical_rows raised
    strat = "label" if kind == "classification" else None
    if "train" not in splits and "validation" in splits and "test" in splits and train_fraction > 0:
        group = _qa_group(splits["validation"]) if kind == "qa" else None
        rest, carved = split_off(splits["validation"], train_fraction, seed, stratify_by=strat, group_by=group)
        splits["validation"], splits["train"] = rest, carved
        how = _GROUPED[group] if group else ("stratified by label" if strat else "uniformly")
        notes.append(
            f"train carved from validation: {len(carved)} of {len(carved) + len(rest)} rows "
            f"({train_fraction:g}, {how}, seed {seed})"
        )
    if "validation" not in splits and "train" in splits and validation_fraction > 0:
        group = _qa_group(splits["train"]) if kind == "qa" else None
        rest, carved = split_off(splits["train"], validation_fraction, seed, stratify_by=strat, group_by=group)
        if carved:
            splits["train"], splits["validation"] = rest, carved
            how = _GROUPED[group] if group else ("stratified by label" if strat else "uniformly")
            notes.append(
                f"validation carved from train: {len(carved)} of {len(carved) + len(rest)} rows "
                f"({validation_fraction:g}, {how}, seed {seed})"
            )
    if not splits:
        raise InputError("no labeled rows in any split", file=source)
    label_list: list[str] = []
    if kind == "classification":
        seen = sorted({r["label"] for rows in splits.values() for r in rows})
        if labels is not None:
            label_list = [str(x) for x in labels]
            unknown = [x for x in seen if x not in label_list]
            if unknown:
                raise InputError(
                    "labels found in the data but not in labels=",
                    file=source,
                    column="label",
                    value=unknown[:10],
                    expected=f"one of {label_list}",
                )
        elif hf_names is not None:
            label_list = list(hf_names)
        else:
            label_list = seen
        if len(label_list) < 2:
            raise InputError(
                "a classification task needs at least two labels",
                file=source,
                column="label",
                value=label_list,
            )
    return Task(
        name=name,
        type=kind,
        splits=splits,
        labels=label_list,
        source=source,
        template=template,
        notes=notes,
    )
