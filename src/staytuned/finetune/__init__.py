"""Fine-tuning trials: schedules, trainer, evaluation, run_trial.

Names are imported lazily so that ``import staytuned.finetune`` never pulls in torch. ``Task``,
``load_task`` and ``compute_metrics`` live in :mod:`staytuned.tasks` and ``TrainConfig`` in
:mod:`staytuned.hparams`; they are re-exported here because a trial takes them.
"""

from __future__ import annotations

from staytuned._lazy import lazy_attributes

_LAZY: dict[str, str] = {
    "run_trial": "staytuned.finetune.trial",
    "TrialResult": "staytuned.finetune.trial",
    "ModelCache": "staytuned.finetune.trial",
    "TrainConfig": "staytuned.hparams.train",
    "Task": "staytuned.tasks",
    "load_task": "staytuned.tasks",
    "compute_metrics": "staytuned.tasks",
}


__getattr__, __dir__ = lazy_attributes('staytuned.finetune', _LAZY, globals())
