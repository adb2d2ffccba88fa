"""The native trainer: staytuned's own lean loop (:mod:`staytuned.finetune.loop`).

Base weights are reused: a :class:`~staytuned.finetune.trial.ModelCache` keeps loaded base
models; a LoRA trial wraps the cached base with a fresh adapter and unloads it afterwards (the
base weights are never written), a full fine-tuning trial trains a deep copy. A QLoRA trial does
what a LoRA trial does on a base the cache loaded in 4-bit NF4 with bitsandbytes (kept apart from
the full-precision one); without bitsandbytes it fails with that reason. The memory planner
(:mod:`staytuned.hardware.budget`) checks the trial before the model loads and again before
training. Memory is released after every trial. The helpers here (LoRA wrapping, checkpointing,
precision and planner checks) are shared with the ``trl`` trainer.
"""

from __future__ import annotations

import copy
import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from staytuned.errors import InputError
from staytuned.hparams.schema import LORA_METHODS
from staytuned.hparams.train import TrainConfig
from staytuned.models import (
    LoadedModel,
    count_4bit_layers,
    default_device,
    keep_4bit_trainable,
    require_bitsandbytes,
)

if TYPE_CHECKING:
    from staytuned.finetune.evaluate import EvalOutput
    from staytuned.finetune.loop import Example, TrainStats
    from staytuned.finetune.trainers.base import TrialJob
    from staytuned.finetune.trial import ModelCache, Progress, TrialResult
    from staytuned.hardware.precision import PrecisionChoice
    from staytuned.tasks import Row, Task


@dataclass
class NativeTrainer:
    """Trains with :func:`staytuned.finetune.loop.train` (no options)."""

    name: ClassVar[str] = "native"

    def run(self, job: TrialJob) -> None:
        prepared = prepare_model(job)
        if prepared is None:
            return
        _TrialRun.for_job(job, *prepared).run_job(job)


def prepare_model(job: TrialJob) -> tuple[LoadedModel, str, PrecisionChoice] | None:
    """Load (or take from the cache) the base model a trial trains, with its device and precision.

    None when the trial cannot run, with ``job.result.error`` saying why: QLoRA without
    bitsandbytes or on a full-precision model, or a trial the planner says cannot fit even before
    loading (nothing is loaded then).
    """
    from staytuned.finetune.trial import resolve_loaded
    from staytuned.hardware.precision import choose_precision

    cfg, result = job.config, job.result
    nf4: str | None = None  # the compute dtype of a 4-bit base (qlora), decided before it is loaded
    if cfg.method == "qlora":
        try:
            require_bitsandbytes()
            if isinstance(job.model, str | Path):
                cache_device = job.model_cache.device if job.model_cache is not None else None
                nf4 = nf4_compute_dtype(cfg, job.precision, cache_device or job.device)
        except InputError as exc:
            result.error = str(exc)
            return None
    if not job.eval_only:
        refused = refuse_before_loading(job.model, job.model_cache, job.device, cfg, job.precision,
                                        job.micro_batch_size, job.gradient_checkpointing, job.memory_budget)
        if refused is not None:
            result.error, result.precision = refused
            return None
    loaded = resolve_loaded(job.model, job.model_cache, job.device, nf4)
    device = str(next(loaded.model.parameters()).device)  # train and score where the model lives
    choice = choose_precision(job.precision, device)
    result.precision = choice.dtype
    result.quantized_layers = count_4bit_layers(loaded.model)
    result.quantization = "nf4" if result.quantized_layers else None
    if result.quantized_layers:
        keep_4bit_trainable(loaded.model)  # an evaluation (this process's or the caller's) may have repacked it
    if cfg.method == "qlora" and not result.quantized_layers:
        result.error = str(InputError(
            "qlora trains on a 4-bit base, and this model was loaded in full precision", field="model",
            value=result.model, expected="a model reference (staytuned loads it in 4 bits) or a model loaded "
                                         "with a 4-bit BitsAndBytesConfig"))
        return None
    return loaded, device, choice


def refuse_before_loading(model: str | Path | LoadedModel | tuple[Any, Any], cache: ModelCache | None,
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

    @classmethod
    def for_job(cls, job: TrialJob, loaded: LoadedModel, device: str, precision: PrecisionChoice) -> Self:
        """The run of ``job`` on its prepared model (see :func:`prepare_model`)."""
        return cls(loaded, job.task, job.config, job.result, device=device, template=job.template,
                   label_scoring=job.label_scoring, micro_batch_size=job.micro_batch_size, precision=precision,
                   progress=job.progress, on_epoch=job.on_epoch, checkpointing=job.gradient_checkpointing,
                   memory_budget=job.memory_budget)

    def run_job(self, job: TrialJob) -> None:
        self.run(job.train_rows, job.eval_rows, job.test_rows, eval_only=job.eval_only, save_dir=job.save_dir)

    def run(self, train_rows: list[Row], eval_rows: list[Row], test_rows: list[Row], *, eval_only: bool,
            save_dir: str | Path | None) -> None:
        import torch

        from staytuned.finetune.loop import NonFiniteLoss, OutOfMemory, TrainStats, is_oom
        from staytuned.finetune.memory import PeakMemory, release_memory
        from staytuned.hardware.budget import DoesNotFit

        if not str(self.device).startswith("cuda"):
            from staytuned.hardware.malloc import keep_freed_memory

            keep_freed_memory()
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
                    trained = peft_model = wrap_lora(base, self.cfg)
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
        from staytuned.finetune.loop import train

        examples = self._examples(train_rows)
        micro = self._fit_memory(model, examples)
        last_eval: list[tuple[int, EvalOutput]] = []

        def on_step(step: int, total: int, loss: float) -> None:
            if self.progress is not None:
                self.progress("train", step, total)

        train(model, examples, self.cfg, pad_id=pad_id(self.loaded.tokenizer), device=self.device,
              micro_batch_size=micro, precision=self.precision, on_step=on_step, stats=stats,
              on_epoch_end=self._epoch_end(model, eval_rows, stats, last_eval))
        return last_eval[0] if last_eval else None

    def _examples(self, train_rows: list[Row]) -> list[Example]:
        """The training rows as token ids (chat template, prompt and target tokenized apart)."""
        from staytuned.finetune.loop import encode_pairs
        from staytuned.tasks import build_chat_example, completion_suffix

        tokenizer = self.loaded.tokenizer
        pairs = [build_chat_example(self.task, row, tokenizer, template=self.template) for row in train_rows]
        return encode_pairs(pairs, tokenizer, self.cfg.max_seq_length, completion_suffix(tokenizer))

    def _epoch_end(self, model: Any, eval_rows: list[Row], stats: TrainStats,
                   last_eval: list[tuple[int, EvalOutput]]) -> Callable[[int], bool] | None:
        """The end-of-epoch hook (score, record, ask ``on_epoch`` whether to prune); None without
        ``on_epoch``: then only the final weights are scored. ``last_eval`` keeps (step, output)."""
        if self.on_epoch is None:
            return None
        on_epoch = self.on_epoch

        def epoch_end(epoch: int) -> bool:
            out = self._eval(model, eval_rows)
            self.result.eval_runtime_s += out.runtime_s
            score = float(out.metrics.get(self.task.metric, math.nan))
            self.result.epoch_scores.append(score)
            last_eval[:] = [(stats.steps, out)]
            return bool(on_epoch(epoch, score))

        return epoch_end

    def _fit_memory(self, model: Any, examples: list[Example]) -> int | None:
        """Plan memory before training (:mod:`staytuned.hardware.budget`): return the micro-batch to
        train with (None: the trainer's own choice) and switch gradient checkpointing on where the
        plan (or the user) says so; raise DoesNotFit when the trial cannot fit."""
        from staytuned.finetune.loop import default_micro_batch, supports_logits_to_keep
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
                    "score": self.result.score, "metric": self.task.metric, "trainer": self.result.trainer}
            (folder / "staytuned-trial.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
            self.result.saved_to = str(folder)
        except OSError as exc:
            self.result.error = f"trained, but saving to {folder} failed: {exc}"


def pad_id(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return int(pad if pad is not None else 0)


def wrap_lora(base: Any, cfg: TrainConfig) -> Any:
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
