"""The one small interface every trainer implements: ``run(job)`` fills ``job.result``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from staytuned.finetune.trial import ModelCache, Progress, TrialResult
    from staytuned.hparams.train import TrainConfig
    from staytuned.models import LoadedModel
    from staytuned.tasks import Row, Task


@dataclass
class TrialJob:
    """One trial as :func:`staytuned.finetune.run_trial` resolved it: a validated config, the task
    and its sampled rows, how to run it (execution settings) and where to report.

    ``result`` comes pre-filled (task, metric, model name, sizes, config, ``status="failed"``);
    the trainer sets status, score, metrics, curves and timings, or ``error`` when it fails.
    """

    model: str | Path | LoadedModel | tuple[Any, Any]  # a reference, or a model already in memory
    task: Task
    config: TrainConfig
    result: TrialResult
    train_rows: list[Row]
    eval_rows: list[Row]
    test_rows: list[Row]  # empty unless the test split is scored too
    seed: int = 0  # the cell's data seed (rows were sampled with it)
    eval_only: bool = False  # score the untuned model, train nothing
    save_dir: Path | None = None
    on_epoch: Callable[[int, float], bool] | None = None  # (epoch, validation score) -> prune?
    progress: Progress | None = None
    template: str | None = None
    label_scoring: str = "loglik"
    # Execution settings shared by every trainer (their meaning: staytuned.hparams.schema).
    device: str | None = None
    precision: str = "auto"
    micro_batch_size: int | None = None
    gradient_checkpointing: str = "auto"
    memory_budget: int | float | str | None = None
    model_cache: ModelCache | None = None


class Trainer(Protocol):
    """Trains and scores one trial. ``run`` never raises for a per-trial failure: it sets
    ``job.result.error`` (the status stays "failed"); KeyboardInterrupt propagates after cleanup."""

    name: ClassVar[str]

    def run(self, job: TrialJob) -> None: ...
