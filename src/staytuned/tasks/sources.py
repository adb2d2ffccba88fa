"""Where tasks come from: bundled short names, folders of split files, single files,
``$STAYTUNED_DATASETS``, ``save_to_disk`` folders and the hub; :func:`load_task` turns any of them
into a :class:`~staytuned.tasks.task.Task`, carving a missing validation (or train) split.

:func:`load_task` reads a bundled short name (``sst2``, ``trec``, ``banking77``, ``scitldr``,
``squad``), a folder of split files, a single JSONL/JSON/CSV/TSV/Parquet file, a Hugging Face
``datasets`` folder written by ``save_to_disk``, or (online) a hub dataset id.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from staytuned.errors import InputError
from staytuned.tasks.columns import canonical_rows
from staytuned.tasks.readers import (
    DATA_SUFFIXES,
    RawSplit,
    is_saved_dataset,
    read_file,
    read_hub,
    read_saved_dataset,
)
from staytuned.tasks.sampling import split_off
from staytuned.tasks.task import SPLITS, TASK_TYPES, Row, Task
from staytuned.tasks.templates import validate_template

#: File names recognised as splits inside a dataset folder (first match wins).
SPLIT_FILE_STEMS: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "validation": ("validation", "valid", "val", "dev"),
    "test": ("test",),
}

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


def _split_of(name: str) -> str | None:
    """The split a dataset's own split name stands for (None: not a train/validation/test split)."""
    for split, stems in SPLIT_FILE_STEMS.items():
        if name in stems:
            return split
    return None


def _raw_from_folder(folder: Path) -> dict[str, RawSplit]:
    if is_saved_dataset(folder):
        return read_saved_dataset(folder, _split_of)
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
    return {split: read_file(p) for split, p in files.items()}


def _raw_from_file(path: Path) -> dict[str, RawSplit]:
    return {"train": read_file(path)}


def _raw_from_hub(name: str, config: str | None) -> dict[str, RawSplit]:
    """A dataset from the Hugging Face hub (online users only; never needed by the tests)."""
    expected = (
        "a bundled name (" + ", ".join(bundled_names()) + "), an existing file or folder, or a reachable hub dataset id"
    )
    return read_hub(name, config, _split_of, expected=expected)


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
    type: str | None = None,
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
    opts = _Options(type, columns, validation_fraction, train_fraction, seed, labels, template)
    if isinstance(name_or_path, str) and key in bundled_manifest():
        folder = bundled_dir() / key
        bundled = replace(opts, validation_fraction=0.0, train_fraction=0.0)
        task = _build_task(_raw_from_folder(folder), key, str(folder), bundled)
        task.source = f"bundled:{key}"
        task.notes.insert(0, "bundled subset; see staytuned/data/ATTRIBUTION.md")
        return task
    if key.startswith("hf:"):
        hub_id, _, cfg = key[3:].partition(":")
        return _build_task(_raw_from_hub(hub_id, cfg or hub_config), name or hub_id, key, opts)
    path = Path(key).expanduser()
    if path.is_dir():
        return _build_task(_raw_from_folder(path), name or path.name, str(path), opts)
    if path.is_file():
        return _build_task(_raw_from_file(path), name or path.stem, str(path), opts)
    env_dir = os.environ.get(DATASETS_ENV)
    if env_dir and "/" not in key and (Path(env_dir) / key).is_dir():
        folder = Path(env_dir) / key
        return _build_task(_raw_from_folder(folder), name or key, str(folder), opts)
    if isinstance(name_or_path, str) and _looks_like_hub_id(key) and not _offline():
        return _build_task(_raw_from_hub(key, hub_config), name or key, f"hf:{key}", opts)
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


@dataclass(frozen=True)
class _Options:
    """How :func:`load_task` maps and splits whatever source it reads (its keyword arguments)."""

    task_type: str | None
    columns: Mapping[str, str] | None
    validation_fraction: float
    train_fraction: float
    seed: int
    labels: Sequence[str] | None
    template: str | None


def _carve(splits: dict[str, list[Row]], into: str, source: str, fraction: float, seed: int, kind: str,
           notes: list[str], *, keep_empty: bool = False) -> None:
    """Move ``fraction`` of split ``source`` into the missing split ``into`` (stratified by label for
    classification, grouped by article or context for qa), with a note saying how. A one-row
    ``source`` carves nothing: ``into`` then stays missing, or is empty with ``keep_empty``."""
    strat = "label" if kind == "classification" else None
    group = _qa_group(splits[source]) if kind == "qa" else None
    rest, carved = split_off(splits[source], fraction, seed, stratify_by=strat, group_by=group)
    if not carved and not keep_empty:
        return
    splits[source], splits[into] = rest, carved
    how = _GROUPED[group] if group else ("stratified by label" if strat else "uniformly")
    notes.append(f"{into} carved from {source}: {len(carved)} of {len(carved) + len(rest)} rows "
                 f"({fraction:g}, {how}, seed {seed})")


def _build_task(raw: dict[str, RawSplit], name: str, source: str, opts: _Options) -> Task:
    task_type, columns, labels, template = opts.task_type, opts.columns, opts.labels, opts.template
    validation_fraction, train_fraction, seed = opts.validation_fraction, opts.train_fraction, opts.seed
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
        split_kind, rows, unlabeled, names = canonical_rows(raw[split], kind, columns, labels)
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
    assert kind is not None  # at least one split was read, or canonical_rows raised
    if "train" not in splits and "validation" in splits and "test" in splits and train_fraction > 0:
        _carve(splits, "train", "validation", train_fraction, seed, kind, notes, keep_empty=True)
    if "validation" not in splits and "train" in splits and validation_fraction > 0:
        _carve(splits, "validation", "train", validation_fraction, seed, kind, notes)
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
    if template is not None:
        validate_template(kind, template)
    return Task(name=name, type=kind, splits=splits, labels=label_list, source=source, template=template,
                notes=notes)
