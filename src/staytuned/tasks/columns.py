"""From raw source rows to canonical task rows: column mapping, type inference, value checks."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from staytuned.errors import InputError
from staytuned.tasks.readers import RawSplit
from staytuned.tasks.task import CANONICAL_KEYS, OPTIONAL_KEYS, Row

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


def canonical_rows(
    raw: RawSplit,
    task_type: str | None,
    columns: Mapping[str, str] | None,
    label_names: Sequence[str] | None,
) -> tuple[str, list[Row], int, list[str] | None]:
    """(task type, canonical rows, number of unlabeled rows, label names used) for one split.

    ``task_type`` None infers the type from the columns; ``columns`` maps source column ->
    canonical key on top of the recognised aliases (:data:`COLUMN_ALIASES`); ``label_names``
    maps integer labels to names (else the split's ClassLabel names, if any). An unlabeled row
    (integer label -1 with names) gets label None.
    """
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
