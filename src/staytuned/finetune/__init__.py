"""Fine-tuning trials: tasks, templates, metrics, TrainConfig, schedules, trainer, run_trial.

Names are imported lazily so that ``import staytuned.finetune`` (and the light modules
``tasks``, ``templates``, ``metrics``, ``config``) never pull in torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, str] = {
    "run_trial": "staytuned.finetune.trial",
    "TrialResult": "staytuned.finetune.trial",
    "ModelCache": "staytuned.finetune.trial",
    "TrainConfig": "staytuned.finetune.config",
    "Task": "staytuned.finetune.tasks",
    "load_task": "staytuned.finetune.tasks",
    "compute_metrics": "staytuned.finetune.metrics",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'staytuned.finetune' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
