"""One trial: fine-tune a base model with one config on one task, score it, never raise.

``run_trial`` is what search strategies, grids and CBS call. It raises InputError only for what
makes every trial fail (unknown task or model, a missing split, a train size larger than the
data); every per-trial failure (invalid HP values, NaN/inf loss, out of memory, anything raised
while training) comes back as ``status="failed"`` with the reason in ``error``.

Who trains is the ``trainer`` execution setting (:mod:`staytuned.finetune.trainers`: native,
trl or command); this module resolves the task, the config and the rows, hands the trial to the
trainer and times it. A :class:`ModelCache` keeps loaded base models across trials (the trainers
that load a model in this process never write its weights).

Seeds: ``run_trial(seed=...)`` picks the training and evaluation rows (the cell's data seed);
``config.seed`` seeds adapter initialisation, data order and dropout. Global RNG state is
restored after the trial.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from staytuned.errors import InputError
from staytuned.hparams.train import TrainConfig
from staytuned.models import (
    LoadedModel,
    load_model,
    resolve_model,
)

if TYPE_CHECKING:
    from staytuned.tasks import Task

#: progress(phase, done, total) with phase "train" (optimizer steps) or "eval" (examples).
Progress = Callable[[str, int, int], None]


@dataclass
class TrialResult:
    """Outcome of one trial (``to_dict()`` is JSON-able; NaN scores stay NaN)."""

    status: str  # "ok" | "failed" | "pruned"
    score: float = math.nan  # primary metric on the evaluation split
    metric: str = ""
    direction: str = "max"
    metrics: dict[str, float] = field(default_factory=dict)
    loss_curve: list[list[float]] = field(default_factory=list)  # [optimizer step, mean target-token loss]
    epoch_scores: list[float] = field(default_factory=list)
    runtime_s: float = 0.0  # whole trial: preparation, training and evaluation
    train_tokens_per_s: float = 0.0  # non-pad training tokens per second of training
    peak_memory_mb: float = 0.0  # see staytuned.finetune.memory
    error: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    task: str = ""
    model: str = ""
    train_size: int | None = None
    n_train: int = 0
    n_eval: int = 0
    eval_split: str = "validation"
    score_test: float | None = None
    test_metrics: dict[str, float] = field(default_factory=dict)
    failed_step: int | None = None  # optimizer step at which the loss became NaN/inf
    train_tokens: int = 0  # non-pad tokens trained on (all epochs)
    train_runtime_s: float = 0.0
    train_cpu_s: float = 0.0  # process CPU seconds of training (about train_runtime_s x busy threads)
    eval_runtime_s: float = 0.0
    steps: int = 0
    micro_batch_size: int = 0
    grad_accumulation: int = 0
    precision: str = ""  # how it ran: fp32, bf16 or fp16 (precision "auto" resolved on its device)
    gradient_checkpointing: str | None = None  # how it trained: "on" or "off" (None: it did not train)
    planned_memory_mb: float = 0.0  # the memory planner's estimate of the training peak (0: not planned)
    label_scoring: str | None = None
    saved_to: str | None = None
    quantization: str | None = None  # "nf4": the frozen base ran in 4 bits (bitsandbytes), as qlora does
    quantized_layers: int = 0  # how many of the base's linear layers were 4-bit (bnb Linear4bit)
    trainer: str = "native"  # who trained it (an execution setting: staytuned.finetune.trainers)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ModelCache:
    """Loaded base models by reference, reused across trials in one process.

    Holds at most ``max_models`` models (least recently used evicted). Models in the cache are
    never trained: LoRA and QLoRA trials add and remove an adapter, full trials train a copy. A
    4-bit base (``nf4_compute_dtype``, for QLoRA) is an entry of its own, next to the
    full-precision one.
    """

    def __init__(self, *, device: str | None = None, max_models: int = 2) -> None:
        self.device = device
        self.max_models = max(1, max_models)
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self.loads = 0  # how many times a model was actually loaded (for tests and logs)

    def get(self, ref: str, *, nf4_compute_dtype: str | None = None) -> LoadedModel:
        """The base model ``ref``; with ``nf4_compute_dtype`` ("bf16", "fp32", "fp16") its 4-bit NF4 version."""
        spec = resolve_model(ref)
        key = f"{spec.kind}:{spec.path}"
        if nf4_compute_dtype is not None:
            key = f"nf4-{nf4_compute_dtype}:{key}"
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key]
        model, tokenizer = load_model(ref, device=self.device, nf4_compute_dtype=nf4_compute_dtype)
        for p in model.parameters():
            p.requires_grad_(False)
        loaded = LoadedModel(model, tokenizer, spec.name)
        self._models[key] = loaded
        self.loads += 1
        while len(self._models) > self.max_models:
            self._models.popitem(last=False)
        return loaded

    def __len__(self) -> int:
        return len(self._models)

    def clear(self) -> None:
        self._models.clear()
        from staytuned.finetune.memory import release_memory

        release_memory()


def _resolve_task(task: str | Path | Task) -> Task:
    from staytuned.tasks import Task, load_task

    if isinstance(task, Task):
        return task
    if isinstance(task, str | Path):
        return load_task(str(task))
    raise InputError("task must be a bundled name, a path or a Task", field="task", value=type(task).__name__)


def resolve_loaded(model: str | Path | LoadedModel | tuple[Any, Any], cache: ModelCache | None,
                   device: str | None, nf4_compute_dtype: str | None = None) -> LoadedModel:
    """``model`` as a LoadedModel: taken from ``cache`` (or loaded on ``device``) when it is a reference."""
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, tuple) and len(model) == 2:
        return LoadedModel(model[0], model[1], type(model[0]).__name__)
    if isinstance(model, str | Path):
        cache = cache if cache is not None else ModelCache(device=device, max_models=1)
        return cache.get(str(model), nf4_compute_dtype=nf4_compute_dtype)
    raise InputError("model must be a reference string, a LoadedModel or (model, tokenizer)",
                     field="model", value=type(model).__name__)


def run_trial(
    model: str | Path | LoadedModel | tuple[Any, Any],
    task: str | Path | Task,
    config: TrainConfig | Mapping[str, Any] | None = None,
    train_size: int | None = None,
    eval_size: int | None = 200,
    eval_split: str = "validation",
    seed: int = 0,
    on_epoch: Callable[[int, float], bool] | None = None,
    save_dir: str | Path | None = None,
    model_cache: ModelCache | None = None,
    *,
    eval_only: bool = False,
    eval_test: bool = False,
    label_scoring: str = "loglik",
    template: str | None = None,
    device: str | None = None,
    micro_batch_size: int | None = None,
    precision: str = "auto",
    gradient_checkpointing: str = "auto",
    memory_budget: int | float | str | None = None,
    progress: Progress | None = None,
    trainer: str = "native",
    trainer_options: Mapping[str, Any] | None = None,
) -> TrialResult:
    """Fine-tune ``model`` on ``task`` with ``config`` and score it; see the module docstring.

    - ``train_size``/``eval_size``: rows sampled with ``seed`` (None = all; classification stratified).
    - ``on_epoch(epoch, score)``: called after every epoch with the validation score; True prunes.
    - ``eval_only``: score the untuned model (no training) the same way.
    - ``eval_test``: also score the test split (``score_test``, ``test_metrics``).
    - ``label_scoring``: "loglik" (default) or "generate", for classification tasks.
    - ``save_dir``: save the adapter (lora) or the whole model (full) and the tokenizer there.
    - ``device``: where a model given by reference is loaded when no ``model_cache`` is given
      (default: CUDA when available); training and scoring run where the model is.
    - ``precision``: auto, fp32, bf16 or fp16, an execution setting decided by
      :func:`staytuned.hardware.precision.choose_precision` for the model's device; the result's
      ``precision`` says what ran. A slow explicit choice issues a ``SlowPrecisionWarning``.
    - ``gradient_checkpointing``: auto, on or off. The memory planner
      (:mod:`staytuned.hardware.budget`) checks a training trial against ``memory_budget`` (bytes or
      a size like "6GB"; default: what the device has available) before the model loads and again
      before training, picks the micro-batch when it is not given, and with auto turns
      checkpointing on only when the trial would not fit otherwise. A trial that cannot fit fails
      at once with the estimate, the memory available and the nearest setting that fits. The
      result's ``gradient_checkpointing`` ("on"/"off") says how it trained.
    - ``trainer``: native (default), trl or command, with its ``trainer_options`` (the execution
      settings declared for that trainer); the result's ``trainer`` says which trained.
    """
    from staytuned.finetune.trainers import TrialJob, get_trainer
    from staytuned.hardware.budget import check_checkpointing, memory_budget_of
    from staytuned.hardware.precision import check_precision

    started = time.perf_counter()
    precision = check_precision(precision)
    check_checkpointing(gradient_checkpointing)
    if memory_budget is not None:
        memory_budget_of("cpu", memory_budget)  # a bad budget fails every trial: InputError now
    impl = get_trainer(trainer, trainer_options)  # an unknown trainer or option fails every trial too
    task_obj = _resolve_task(task)
    cfg, problem = _parse_config(config)
    result = TrialResult(status="failed", metric=task_obj.metric, direction=task_obj.direction,
                         task=task_obj.name, model=_model_name(model), train_size=train_size,
                         eval_split=eval_split, trainer=impl.name,
                         label_scoring=label_scoring if task_obj.type == "classification" else None)
    if cfg is None:
        result.config = dict(config) if isinstance(config, Mapping) else {}
        result.error = problem
        result.runtime_s = time.perf_counter() - started
        return result
    result.config = cfg.to_dict()
    train_rows = [] if eval_only else task_obj.train_rows(train_size, seed=seed)
    eval_rows = task_obj.eval_rows(eval_split, eval_size, seed=seed)
    test_rows = task_obj.eval_rows("test", eval_size, seed=seed) if eval_test else []
    result.n_train, result.n_eval = len(train_rows), len(eval_rows)
    impl.run(TrialJob(model=model, task=task_obj, config=cfg, result=result, train_rows=train_rows,
                      eval_rows=eval_rows, test_rows=test_rows, seed=seed, eval_only=eval_only,
                      save_dir=Path(save_dir) if save_dir is not None else None, on_epoch=on_epoch,
                      progress=progress, template=template, label_scoring=label_scoring, device=device,
                      precision=precision, micro_batch_size=micro_batch_size,
                      gradient_checkpointing=gradient_checkpointing, memory_budget=memory_budget,
                      model_cache=model_cache))
    if result.status == "failed" and result.error is None:
        result.error = "trial failed"
    result.runtime_s = time.perf_counter() - started
    return result


def _model_name(model: str | Path | LoadedModel | tuple[Any, Any]) -> str:
    if isinstance(model, LoadedModel):
        return model.name
    return type(model[0]).__name__ if isinstance(model, tuple) else str(model)


def _parse_config(config: TrainConfig | Mapping[str, Any] | None) -> tuple[TrainConfig | None, str | None]:
    """(the validated config, None), or (None, why it is invalid): a bad config fails the trial only."""
    try:
        return TrainConfig.from_dict(config), None
    except InputError as exc:
        return None, f"invalid hyperparameters: {exc}"


