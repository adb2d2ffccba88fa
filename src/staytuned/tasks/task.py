"""The Task type: a dataset with a task type, its primary metric and train/validation/test rows.

A :class:`Task` holds plain row dicts with canonical keys per task type:

- classification: ``{"text": str, "label": str}``
- summarization:  ``{"document": str, "summary": str}``
- qa (contextual question answering): ``{"context": str, "question": str, "answers": [str, ...]}``

How a task is loaded lives in :mod:`staytuned.tasks.sources`, how a row becomes a prompt in
:mod:`staytuned.tasks.templates`; this module knows neither.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from staytuned.errors import InputError
from staytuned.tasks.sampling import subsample

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

Row = dict[str, Any]


@dataclass
class Task:
    """A dataset with a task type and primary metric.

    ``splits`` maps split name (``train``/``validation``/``test``) to a list of canonical row
    dicts; a split absent from the source (and not carved) is absent from the dict.
    ``template`` optionally overrides the prompt template (see :mod:`staytuned.tasks.templates`,
    which validates it when the task is loaded and whenever a prompt is built).
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
        """Gold values for :func:`staytuned.tasks.metrics.compute_metrics`."""
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
