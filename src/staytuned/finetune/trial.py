"""One trial: fine-tune a base model with one config on one task, score it, never raise.

``run_trial`` is what search strategies, grids and CBS call. It raises InputError only for what
makes every trial fail (unknown task or model, a missing split, a train size larger than the
data); every per-trial failure (invalid HP values, NaN/inf loss, out of memory, anything raised
while training) comes back as ``status="failed"`` with the reason in ``error``.

Base weights are reused: a :class:`ModelCache` keeps loaded base models; a LoRA trial wraps
the cached base with a fresh adapter and unloads it afterwards (the base weights are never
written), a full fine-tuning trial trains a deep copy. A QLoRA trial does what a LoRA trial does
on a base the cache loaded in 4-bit NF4 with bitsandbytes (kept apart from the full-precision
one); without bitsandbytes it fails with that reason. Memory is released after every trial.

Seeds: ``run_trial(seed=...)`` picks the training and evaluation rows (the cell's data seed);
``config.seed`` seeds adapter initialisation, data order and dropout. Global RNG state is
restored after the trial.
"""

from __future__ import annotations

import copy
import json
import math
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from staytuned.errors import InputError
from staytuned.hparams.schema import LORA_METHODS
from staytuned.hparams.train import TrainConfig
from staytuned.models import (
    LoadedModel,
    count_4bit_layers,
    default_device,
    keep_4bit_trainable,
    load_model,
    require_bitsandbytes,
    resolve_model,
)

if TYPE_CHECKING:
    from staytuned.finetune.evaluate import EvalOutput
    from staytuned.finetune.trainer import Example, TrainStats
    from staytuned.hardware.precision import PrecisionChoice
    from staytuned.tasks import Row, Task

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


def _resolve_model(model: str | Path | LoadedModel | tuple[Any, Any], cache: ModelCache | None,
                   device: str | None, nf4_compute_dtype: str | None = None) -> LoadedModel:
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
    """
    from staytuned.hardware.budget import check_checkpointing, memory_budget_of
    from staytuned.hardware.precision import check_precision, choose_precision

    started = time.perf_counter()
    precision = check_precision(precision)
    check_checkpointing(gradient_checkpointing)
    if memory_budget is not None:
        memory_budget_of("cpu", memory_budget)  # a bad budget fails every trial: InputError now
    task_obj = _resolve_task(task)
    cfg, problem = _parse_config(config)
    nf4: str | None = None  # the compute dtype of a 4-bit base (qlora), decided before it is loaded
    if cfg is not None and cfg.method == "qlora":
        try:
            require_bitsandbytes()
            if isinstance(model, str | Path):
                cache_device = model_cache.device if model_cache is not None else None
                nf4 = nf4_compute_dtype(cfg, precision, cache_device or device)
        except InputError as exc:
            problem = str(exc)
    if cfg is not None and problem is None and not eval_only:
        refused = _refuse_before_loading(model, model_cache, device, cfg, precision, micro_batch_size,
                                         gradient_checkpointing, memory_budget)
        if refused is not None:  # nothing was loaded
            return TrialResult(status="failed", metric=task_obj.metric, direction=task_obj.direction,
                               task=task_obj.name, model=_model_name(model), train_size=train_size,
                               eval_split=eval_split, config=cfg.to_dict(), error=refused[0],
                               precision=refused[1], runtime_s=time.perf_counter() - started)
    loaded = _resolve_model(model, model_cache, device, nf4)
    device = str(next(loaded.model.parameters()).device)  # train and score where the model lives
    choice = choose_precision(precision, device)
    model_name = str(model) if isinstance(model, str | Path) else loaded.name
    result = TrialResult(status="failed", metric=task_obj.metric, direction=task_obj.direction,
                         task=task_obj.name, model=model_name, train_size=train_size,
                         eval_split=eval_split,
                         label_scoring=label_scoring if task_obj.type == "classification" else None,
                         precision=choice.dtype)
    train_rows = [] if eval_only else task_obj.train_rows(train_size, seed=seed)
    eval_rows = task_obj.eval_rows(eval_split, eval_size, seed=seed)
    test_rows = task_obj.eval_rows("test", eval_size, seed=seed) if eval_test else []
    result.n_train, result.n_eval = len(train_rows), len(eval_rows)
    result.quantized_layers = count_4bit_layers(loaded.model)
    result.quantization = "nf4" if result.quantized_layers else None
    if result.quantized_layers:
        keep_4bit_trainable(loaded.model)  # an evaluation (this process's or the caller's) may have repacked it
    if cfg is not None and cfg.method == "qlora" and problem is None and not result.quantized_layers:
        problem = str(InputError(
            "qlora trains on a 4-bit base, and this model was loaded in full precision", field="model",
            value=model_name, expected="a model reference (staytuned loads it in 4 bits) or a model loaded "
                                       "with a 4-bit BitsAndBytesConfig"))
    if cfg is None or problem is not None:
        result.config = cfg.to_dict() if cfg is not None else dict(config) if isinstance(config, Mapping) else {}
        result.error = problem
        result.runtime_s = time.perf_counter() - started
        return result
    result.config = cfg.to_dict()
    _TrialRun(loaded, task_obj, cfg, result, device=device, template=template,
              label_scoring=label_scoring, micro_batch_size=micro_batch_size, precision=choice,
              progress=progress, on_epoch=on_epoch, checkpointing=gradient_checkpointing,
              memory_budget=memory_budget).run(train_rows, eval_rows, test_rows, eval_only=eval_only,
                                               save_dir=save_dir)
    result.runtime_s = time.perf_counter() - started
    return result


def _model_name(model: str | Path | LoadedModel | tuple[Any, Any]) -> str:
    if isinstance(model, LoadedModel):
        return model.name
    return type(model[0]).__name__ if isinstance(model, tuple) else str(model)


def _refuse_before_loading(model: str | Path | LoadedModel | tuple[Any, Any], cache: ModelCache | None,
                           device: str | None, cfg: TrainConfig, precision: str, micro_batch_size: int | None,
                           checkpointing: str, budget: int | float | str | None) -> tuple[str, str] | None:
    """(why, precision) when the planner says, from the model's config alone, that the trial cannot
    fit even without activations; None when it may fit or the planner cannot tell."""
    from staytuned.hardware.budget import arch_of, fit_before_loading, memory_budget_of
    from staytuned.hardware.planner import resolve_arch
    from staytuned.hardware.precision import choose_precision

    if isinstance(model, LoadedModel | tuple):
        weights = model.model if isinstance(model, LoadedModel) else model[0]
        arch, where = arch_of(weights), str(next(weights.parameters()).device)
    else:
        try:
            arch = resolve_arch(str(model))  # config.json only: nothing is loaded
        except InputError:
            return None  # e.g. the tiny test models: planned before training instead
        where = (cache.device if cache is not None else None) or device or default_device()
    if arch is None:
        return None
    dtype = choose_precision(precision, where, warn=False).dtype
    fit = fit_before_loading(arch, cfg, precision=dtype, device=where, budget=memory_budget_of(where, budget),
                             micro_batch=micro_batch_size, checkpointing=checkpointing)
    return (fit.reason, dtype) if fit is not None and not fit.fits else None


def nf4_compute_dtype(config: TrainConfig, precision: str, device: str | None) -> str | None:
    """The compute dtype ("bf16", "fp32", "fp16") of the 4-bit NF4 base a qlora ``config`` trains
    on at ``precision`` on ``device`` (default: CUDA when available); None for the other methods,
    which train on the full-precision base. InputError when bitsandbytes cannot be imported."""
    from staytuned.hardware.precision import choose_precision

    if config.method != "qlora":
        return None
    require_bitsandbytes()
    return choose_precision(precision, device or default_device(), warn=False).dtype


def _parse_config(config: TrainConfig | Mapping[str, Any] | None) -> tuple[TrainConfig | None, str | None]:
    """(the validated config, None), or (None, why it is invalid): a bad config fails the trial only."""
    try:
        return TrainConfig.from_dict(config), None
    except InputError as exc:
        return None, f"invalid hyperparameters: {exc}"


class _TrialRun:
    """The stateful middle of run_trial: prepare the model, train, evaluate, clean up."""

    def __init__(self, loaded: LoadedModel, task: Task, cfg: TrainConfig, result: TrialResult, *,
                 device: str, template: str | None, label_scoring: str, micro_batch_size: int | None,
                 precision: PrecisionChoice, progress: Progress | None,
                 on_epoch: Callable[[int, float], bool] | None, checkpointing: str = "auto",
                 memory_budget: int | float | str | None = None) -> None:
        self.loaded, self.task, self.cfg, self.result = loaded, task, cfg, result
        self.device, self.template, self.label_scoring = device, template, label_scoring
        self.micro_batch_size, self.progress, self.on_epoch = micro_batch_size, progress, on_epoch
        self.precision = precision
        self.checkpointing, self.memory_budget = checkpointing, memory_budget

    def run(self, train_rows: list[Row], eval_rows: list[Row], test_rows: list[Row], *, eval_only: bool,
            save_dir: str | Path | None) -> None:
        import torch

        from staytuned.finetune.memory import PeakMemory, release_memory
        from staytuned.finetune.trainer import NonFiniteLoss, OutOfMemory, TrainStats, is_oom
        from staytuned.hardware.budget import DoesNotFit

        base = self.loaded.model
        grad_flags = [p.requires_grad for p in base.parameters()]
        base_checkpointing = checkpointing_state(base)  # restored after the trial: the base is cached
        trained = peft_model = None
        stats = TrainStats()
        result = self.result
        peak = PeakMemory(self.device)
        devices = [torch.cuda.current_device()] if str(self.device).startswith("cuda") else []
        try:
            with peak, torch.random.fork_rng(devices=devices):
                torch.manual_seed(self.cfg.seed)
                if eval_only:
                    trained = base
                elif self.cfg.method in LORA_METHODS:  # qlora: the same adapter on the 4-bit base
                    trained = peft_model = _wrap_lora(base, self.cfg)
                else:
                    trained = copy.deepcopy(base)
                    for p in trained.parameters():
                        p.requires_grad_(True)
                last_eval: tuple[int, EvalOutput] | None = None
                if not eval_only:
                    last_eval = self._train(trained, train_rows, eval_rows, stats)
                if stats.stopped_by == "pruned":
                    result.status = "pruned"
                    result.score = result.epoch_scores[-1]
                    result.metrics = dict(last_eval[1].metrics) if last_eval else {}
                else:
                    # The last epoch's evaluation is the final one when it saw the final weights.
                    reuse = last_eval if last_eval is not None and last_eval[0] == stats.steps else None
                    out = reuse[1] if reuse is not None else self._eval(trained, eval_rows)
                    if reuse is None:
                        result.eval_runtime_s += out.runtime_s
                    result.metrics = dict(out.metrics)
                    result.score = float(out.metrics.get(self.task.metric, math.nan))
                    if not result.epoch_scores:
                        result.epoch_scores = [result.score]
                    if test_rows:
                        test = self._eval(trained, test_rows)
                        result.test_metrics = dict(test.metrics)
                        result.score_test = float(test.metrics.get(self.task.metric, math.nan))
                    result.status = "ok"
                    if save_dir is not None and not eval_only:
                        self._save(trained, Path(save_dir))
        except NonFiniteLoss as exc:
            result.error, result.failed_step = str(exc), exc.step
        except (OutOfMemory, DoesNotFit) as exc:
            result.error = str(exc)
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            result.error = ("out of memory: " if is_oom(exc) else "") + f"{type(exc).__name__}: {exc}"
            result.status = "failed" if result.status != "ok" else result.status
        finally:
            result.peak_memory_mb = peak.mb or peak.read()
            restore_checkpointing(base, base_checkpointing)
            if peft_model is not None:
                peft_model.unload()  # removes the LoRA layers; the base weights were never written
            for p, flag in zip(base.parameters(), grad_flags, strict=True):
                p.requires_grad_(flag)
            base.eval()
            del trained, peft_model
            release_memory()
        result.loss_curve = stats.loss_curve
        result.steps = stats.steps
        result.micro_batch_size, result.grad_accumulation = stats.micro_batch_size, stats.grad_accumulation
        result.train_runtime_s, result.train_cpu_s = stats.train_time_s, stats.train_cpu_s
        result.train_tokens = stats.train_tokens
        if stats.train_time_s > 0:
            result.train_tokens_per_s = stats.train_tokens / stats.train_time_s
        if result.status == "failed" and result.error is None:
            result.error = "trial failed"

    def _train(self, model: Any, train_rows: list[Row], eval_rows: list[Row],
               stats: TrainStats) -> tuple[int, EvalOutput] | None:
        from staytuned.finetune.trainer import encode_pairs, train
        from staytuned.tasks import build_chat_example, completion_suffix

        tokenizer = self.loaded.tokenizer
        pairs = [build_chat_example(self.task, row, tokenizer, template=self.template) for row in train_rows]
        examples = encode_pairs(pairs, tokenizer, self.cfg.max_seq_length, completion_suffix(tokenizer))
        micro = self._fit_memory(model, examples)
        last_eval: list[tuple[int, EvalOutput]] = []

        def epoch_end(epoch: int) -> bool:
            out = self._eval(model, eval_rows)
            self.result.eval_runtime_s += out.runtime_s
            score = float(out.metrics.get(self.task.metric, math.nan))
            self.result.epoch_scores.append(score)
            last_eval[:] = [(stats.steps, out)]
            return bool(self.on_epoch(epoch, score)) if self.on_epoch is not None else False

        def on_step(step: int, total: int, loss: float) -> None:
            if self.progress is not None:
                self.progress("train", step, total)

        train(model, examples, self.cfg, pad_id=_pad_id(tokenizer), device=self.device,
              micro_batch_size=micro, precision=self.precision, on_step=on_step, stats=stats,
              on_epoch_end=epoch_end if self.on_epoch is not None else None)
        return last_eval[0] if last_eval else None

    def _fit_memory(self, model: Any, examples: list[Example]) -> int | None:
        """Plan memory before training (:mod:`staytuned.hardware.budget`): return the micro-batch to
        train with (None: the trainer's own choice) and switch gradient checkpointing on where the
        plan (or the user) says so; raise DoesNotFit when the trial cannot fit."""
        from staytuned.finetune.trainer import default_micro_batch, supports_logits_to_keep
        from staytuned.hardware.budget import DoesNotFit, arch_of, fit_trial, memory_budget_of

        micro = self.micro_batch_size
        arch = arch_of(self.loaded.model)
        fit = None
        if arch is not None and examples:
            keep = max(e.n_target for e in examples) + 1 if supports_logits_to_keep(model) else None
            fit = fit_trial(arch, self.cfg, precision=self.precision.dtype, device=self.device,
                            budget=memory_budget_of(self.device, self.memory_budget),
                            seq_len=max(len(e.input_ids) for e in examples),
                            micro_batch=micro or default_micro_batch(examples, self.cfg.batch_size, self.device),
                            micro_fixed=micro is not None, checkpointing=self.checkpointing,
                            logit_positions=keep)
        on = self.checkpointing == "on"
        if fit is not None:
            if not fit.fits:
                raise DoesNotFit(fit.reason)
            micro, on = fit.micro_batch_size, fit.gradient_checkpointing
            self.result.planned_memory_mb = fit.estimate / 2**20
        if on:
            enable_checkpointing(model)
        self.result.gradient_checkpointing = "on" if on else "off"
        return micro

    def _eval(self, model: Any, rows: list[Row]) -> EvalOutput:
        from staytuned.finetune.evaluate import evaluate

        progress = None
        if self.progress is not None:
            report = self.progress

            def progress(done: int, total: int) -> None:
                report("eval", done, total)

        return evaluate(model, self.loaded.tokenizer, self.task, rows, label_scoring=self.label_scoring,
                        max_seq_length=self.cfg.max_seq_length, template=self.template,
                        device=self.device, progress=progress,
                        precision=self.precision)

    def _save(self, model: Any, folder: Path) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            model.save_pretrained(folder)  # a PeftModel saves only the adapter
            self.loaded.tokenizer.save_pretrained(folder)
            meta = {"task": self.task.name, "model": self.result.model, "method": self.cfg.method,
                    "config": self.cfg.to_dict(), "precision": self.precision.dtype,
                    "quantization": self.result.quantization,
                    "score": self.result.score, "metric": self.task.metric}
            (folder / "staytuned-trial.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
            self.result.saved_to = str(folder)
        except OSError as exc:
            self.result.error = f"trained, but saving to {folder} failed: {exc}"


def _pad_id(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return int(pad if pad is not None else 0)


def _wrap_lora(base: Any, cfg: TrainConfig) -> Any:
    """A PeftModel around ``base`` with a fresh adapter (initialised from the current torch seed)."""
    from peft import LoraConfig, get_peft_model

    spec = cfg.lora_target_modules.strip()
    targets: str | list[str] = spec if spec == "all-linear" else [m.strip() for m in spec.split(",")]
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, bias="none", task_type="CAUSAL_LM")
    with warnings.catch_warnings():
        # peft probes a deprecated transformers attribute; the warning is not actionable here.
        warnings.simplefilter("ignore", FutureWarning)
        return get_peft_model(base, lora)


def _checkpointing_target(model: Any) -> Any:
    """The transformers model under a PeftModel (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def enable_checkpointing(model: Any) -> None:
    """Gradient checkpointing on ``model`` (non-reentrant), with inputs that require grad so
    gradients reach a LoRA adapter through the frozen embeddings."""
    target = _checkpointing_target(model)
    if not getattr(target, "supports_gradient_checkpointing", False):
        raise ValueError(f"{type(target).__name__} does not support gradient checkpointing")
    kwargs = {"use_reentrant": False}
    if hasattr(target, "activation_checkpointing_enable"):  # transformers >= 5.x: the new name
        target.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        target.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if not _input_grad_hooks(target):  # recent transformers already add the hook
        target.enable_input_require_grads()


def _input_grad_hooks(model: Any) -> bool:
    return bool(getattr(model, "_require_grads_hooks", None) or getattr(model, "_require_grads_hook", None))


def checkpointing_state(model: Any) -> tuple[bool, bool]:
    """(checkpointing on?, input-grad hook set?) of a model, to restore after a trial."""
    target = _checkpointing_target(model)
    on = any(getattr(m, "gradient_checkpointing", False) is True for m in target.modules())
    return on, _input_grad_hooks(target)


def restore_checkpointing(model: Any, state: tuple[bool, bool]) -> None:
    """Undo what a trial switched on: cached base models are reused by the next trial."""
    target = _checkpointing_target(model)
    on, hooks = checkpointing_state(target)
    if on and not state[0]:
        if hasattr(target, "activation_checkpointing_disable"):
            target.activation_checkpointing_disable()
        else:
            target.gradient_checkpointing_disable()
    if hooks and not state[1] and _input_grad_hooks(target):
        target.disable_input_require_grads()
