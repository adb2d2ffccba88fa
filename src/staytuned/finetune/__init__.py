"""Fine-tuning trials: tasks, templates, metrics, TrainConfig, schedules, trainer, run_trial.

Names are imported lazily so that ``import staytuned.finetune`` (and the light modules
``tasks``, ``templates``, ``metrics``, ``config``) never pull in torch.
"""

from __future__ import annotations

from staytuned._lazy import lazy_attributes

_LAZY: dict[str, str] = {
    "run_trial": "staytuned.finetune.trial",
    "TrialResult": "staytuned.finetune.trial",
    "ModelCache": "staytuned.finetune.trial",
    "TrainConfig": "staytuned.finetune.config",
    "Task": "staytuned.finetune.tasks",
    "load_task": "staytuned.finetune.tasks",
    "compute_metrics": "staytuned.finetune.metrics",
}


__getattr__, __dir__ = lazy_attributes('staytuned.finetune', _LAZY, globals())
