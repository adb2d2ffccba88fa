"""Tasks: what a trial trains and scores on. Data, prompts and metrics; no torch.

- :mod:`~staytuned.tasks.task`: :class:`Task` and the task types
- :mod:`~staytuned.tasks.sources`: :func:`load_task` (bundled names, folders, files, hub)
- :mod:`~staytuned.tasks.readers`, :mod:`~staytuned.tasks.columns`: file formats -> canonical rows
- :mod:`~staytuned.tasks.sampling`: deterministic subsampling and carving
- :mod:`~staytuned.tasks.templates`: rows -> prompts and targets
- :mod:`~staytuned.tasks.metrics`: predictions -> scores

Every module here is light (stdlib only at import), so the names are imported eagerly.
"""

from __future__ import annotations

from staytuned.tasks.metrics import METRICS, compute_metrics, normalize_label
from staytuned.tasks.sampling import split_off, subsample
from staytuned.tasks.sources import (
    DATASETS_ENV,
    NOT_BUNDLED,
    bundled_dir,
    bundled_manifest,
    bundled_names,
    load_task,
)
from staytuned.tasks.task import (
    CANONICAL_KEYS,
    PRIMARY_METRIC,
    SPLITS,
    TASK_TYPES,
    Row,
    Task,
    TaskType,
)
from staytuned.tasks.templates import (
    DEFAULT_TEMPLATES,
    build_chat_example,
    build_prompt,
    completion_suffix,
    format_instruction,
    render_prompt,
    target_strings,
    target_text,
    validate_template,
)

__all__ = [
    "CANONICAL_KEYS",
    "DATASETS_ENV",
    "DEFAULT_TEMPLATES",
    "METRICS",
    "NOT_BUNDLED",
    "PRIMARY_METRIC",
    "SPLITS",
    "TASK_TYPES",
    "Row",
    "Task",
    "TaskType",
    "build_chat_example",
    "build_prompt",
    "bundled_dir",
    "bundled_manifest",
    "bundled_names",
    "completion_suffix",
    "compute_metrics",
    "format_instruction",
    "load_task",
    "normalize_label",
    "render_prompt",
    "split_off",
    "subsample",
    "target_strings",
    "target_text",
    "validate_template",
]
