"""Fine-tuning trials: schedules, trainer, evaluation, run_trial.

Names are imported lazily so that ``import staytuned.finetune`` never pulls in torch. ``Task``,
``load_task`` and ``compute_metrics`` live in :mod:`staytuned.tasks` and ``TrainConfig`` in
:mod:`staytuned.hparams`; they are re-exported here because a trial takes them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from staytuned._lazy import lazy_imports

if TYPE_CHECKING:
    from staytuned.finetune.trial import ModelCache, TrialResult, run_trial
    from staytuned.hparams.train import TrainConfig
    from staytuned.tasks import Task, compute_metrics, load_task

__all__ = [
    "ModelCache",
    "Task",
    "TrainConfig",
    "TrialResult",
    "compute_metrics",
    "load_task",
    "run_trial",
]

# The names of the TYPE_CHECKING block, each resolved from its module on first access.
_LAZY, __getattr__, __dir__ = lazy_imports(globals())
