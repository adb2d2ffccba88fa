"""The ``trl`` trainer: TRL's ``SFTTrainer`` (HF ``Trainer`` underneath) from the same TrainConfig.

What matches the native loop (:mod:`staytuned.finetune.loop`), so that scores compare:

- the examples: the same chat-template prompt and target token ids (:func:`~staytuned.finetune.loop.encode_pairs`),
  handed to TRL already tokenized with a completion mask, so the loss covers the answer tokens only
  (``completion_only_loss``: prompt tokens get label -100), averaged over the effective batch;
- the effective batch: ``batch_size`` = per-device batch x gradient accumulation (x processes), the
  micro-batch from the execution setting or the memory planner, as native does;
- the optimizer (:func:`~staytuned.finetune.loop.make_optimizer`, built by TRL's trainer at its
  usual point so FSDP/DeepSpeed can shard it) and every schedule: the transformers names by name,
  ``time_based``/``step``/``exponential`` through :func:`~staytuned.finetune.schedules.build_scheduler`;
  gradient clipping at :data:`~staytuned.finetune.loop.MAX_GRAD_NORM`; ``config.seed``;
- LoRA/QLoRA (the cached base is wrapped with a fresh adapter and unwrapped after, like native),
  gradient checkpointing from the planner, bf16/fp16 from the precision choice;
- per-epoch scores with staytuned's own evaluation (:mod:`staytuned.finetune.evaluate`) feeding
  ``on_epoch`` (pruning), the loss curve, steps, training tokens (non-pad, prompt + target) per
  second of training, timings, peak memory and ``save_dir``.

What differs: TRL batches in random order without length grouping and computes the loss with its
chunked LM head; nothing is written to disk (no checkpoints, no report_to integrations) and its
progress bars and logs are silenced.

With ``distributed`` fsdp or deepspeed (or auto, when the memory planner says the trial does not
fit on one GPU and several are visible) the trial runs under ``accelerate launch`` instead; see
:mod:`staytuned.finetune.trainers.trl_launch`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from staytuned.errors import InputError
from staytuned.finetune.trainers.native import _TrialRun, pad_id, prepare_model
from staytuned.hparams.schema import DISTRIBUTED

if TYPE_CHECKING:
    from staytuned.finetune.evaluate import EvalOutput
    from staytuned.finetune.loop import Example, TrainStats
    from staytuned.finetune.trainers.base import TrialJob
    from staytuned.hardware.precision import PrecisionChoice
    from staytuned.hparams.train import TrainConfig
    from staytuned.tasks import Row

#: staytuned optimizer -> the transformers ``optim`` name (recorded in the arguments; the
#: optimizer itself is staytuned's, so parameter groups and defaults match native).
HF_OPTIMIZERS = {"adamw": "adamw_torch", "sgd": "sgd", "adafactor": "adafactor"}


@dataclass
class TRLTrainer:
    """Trains with TRL's ``SFTTrainer``; ``distributed`` and ``num_processes`` choose the
    ``accelerate launch`` path (see the module docstring)."""

    name: ClassVar[str] = "trl"
    distributed: str = "auto"
    num_processes: int | None = None

    def __post_init__(self) -> None:
        if self.distributed not in DISTRIBUTED:
            raise InputError("unknown distributed mode", field="distributed", value=self.distributed,
                             expected="one of " + ", ".join(DISTRIBUTED))
        if self.num_processes is not None and self.num_processes < 1:
            raise InputError("num_processes must be at least 1", field="num_processes",
                             value=self.num_processes, expected="an integer >= 1")

    def run(self, job: TrialJob) -> None:
        from staytuned.finetune.trainers.trl_launch import launch_plan, run_launched

        try:
            plan = launch_plan(job, self.distributed, self.num_processes)
        except InputError as exc:
            job.result.error = str(exc)
            return
        if plan is not None:
            run_launched(job, plan)
            return
        prepared = prepare_model(job)
        if prepared is None:
            return
        TRLRun.for_job(job, *prepared).run_job(job)


class TRLRun(_TrialRun):
    """The native trial run (model preparation, scoring, saving, cleanup) with TRL training."""

    world_size: int = 1  # processes sharing the effective batch (accelerate launch)
    launched: bool = False  # under accelerate launch (see trl_launch)

    def _train(self, model: Any, train_rows: list[Row], eval_rows: list[Row],
               stats: TrainStats) -> tuple[int, EvalOutput] | None:
        from staytuned.finetune.loop import default_micro_batch

        examples = self._examples(train_rows)
        micro = self._fit_memory(model, examples) or default_micro_batch(examples, self.cfg.batch_size,
                                                                          self.device)
        last_eval: list[tuple[int, EvalOutput]] = []
        self.kept: list[Any] = []  # the SFTTrainer (the launched path saves through it)

        def on_step(step: int, total: int, loss: float) -> None:
            if self.progress is not None:
                self.progress("train", step, total)

        sft_train(model, self.loaded.tokenizer, examples, self.cfg, device=self.device, micro_batch_size=micro,
                  precision=self.precision, stats=stats, on_step=on_step, world_size=self.world_size,
                  on_epoch_end=self._epoch_end(model, eval_rows, stats, last_eval),
                  keep=self.kept if self.launched else None)
        return last_eval[0] if last_eval else None


def split_batch(batch_size: int, micro: int, world_size: int = 1) -> tuple[int, int]:
    """(per-device batch, gradient accumulation) with per-device x accumulation x processes ==
    ``batch_size`` exactly: the largest per-device batch <= ``micro`` that divides the batch."""
    if batch_size % world_size:
        raise InputError("the batch does not split evenly over the processes", field="batch_size",
                         value=batch_size, expected=f"a multiple of the {world_size} processes")
    per_process = batch_size // world_size
    per_device = max(d for d in range(1, min(per_process, max(1, micro)) + 1) if per_process % d == 0)
    return per_device, per_process // per_device


def train_steps(n_examples: int, config: TrainConfig) -> tuple[int, int]:
    """(total optimizer steps, steps per epoch), counted as the native loop counts them."""
    per_epoch = math.ceil(n_examples / config.batch_size)
    return max(1, math.ceil(config.epochs * per_epoch)), per_epoch


def sft_config(config: TrainConfig, *, output_dir: str, device: str, micro_batch_size: int, grad_accumulation: int,
               total_steps: int, precision: PrecisionChoice) -> Any:
    """The ``SFTConfig`` of one trial (quiet, nothing saved, staytuned's batch, schedule and seed)."""
    from trl import SFTConfig

    from staytuned.finetune.loop import MAX_GRAD_NORM
    from staytuned.finetune.schedules import HF_SCHEDULES, warmup_steps

    hf_schedule = config.lr_scheduler in HF_SCHEDULES
    warmup = 0 if config.lr_scheduler == "constant" else warmup_steps(config, total_steps)
    autocast = precision.autocast
    return SFTConfig(
        output_dir=output_dir, per_device_train_batch_size=micro_batch_size,
        gradient_accumulation_steps=grad_accumulation, max_steps=total_steps,
        num_train_epochs=config.epochs, learning_rate=config.peak_lr, weight_decay=config.weight_decay,
        # Only the transformers schedules are built by name; the classic decays in create_scheduler.
        lr_scheduler_type=config.lr_scheduler if hf_schedule else "constant",
        warmup_steps=warmup if hf_schedule else 0,
        optim=HF_OPTIMIZERS[config.optimizer], max_grad_norm=MAX_GRAD_NORM, seed=config.seed,
        bf16=autocast and precision.dtype == "bf16", fp16=autocast and precision.dtype == "fp16",
        use_cpu=not device.startswith("cuda"),
        activation_checkpointing=False,  # TRL defaults it on; staytuned's planner decides (enable_checkpointing)
        completion_only_loss=True, max_length=config.max_seq_length, packing=False, shuffle_dataset=False,
        logging_strategy="steps", logging_steps=1, logging_nan_inf_filter=False,
        include_num_input_tokens_seen="non_padding",
        save_strategy="no", eval_strategy="no", report_to="none", disable_tqdm=True,
        log_level="error", log_level_replica="error", dataloader_num_workers=0,
        remove_unused_columns=True,
    )


def sft_dataset(examples: Sequence[Example]) -> Any:
    """Tokenized prompt-completion rows: TRL masks the prompt from ``completion_mask``."""
    from datasets import Dataset

    return Dataset.from_dict({
        "input_ids": [list(e.input_ids) for e in examples],
        "completion_mask": [[0] * e.n_prompt + [1] * e.n_target for e in examples],
    })


def build_trainer(model: Any, tokenizer: Any, examples: Sequence[Example], config: TrainConfig, *,
                  output_dir: str, device: str, micro_batch_size: int, precision: PrecisionChoice,
                  world_size: int = 1, callbacks: Sequence[Any] = ()) -> Any:
    """The ``SFTTrainer`` of one trial (tests inspect its batches and schedule)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import SFTTrainer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from staytuned.finetune.loop import make_optimizer
    from staytuned.finetune.schedules import HF_SCHEDULES, build_scheduler

    total, per_epoch = train_steps(len(examples), config)
    micro, accumulation = split_batch(config.batch_size, micro_batch_size, world_size)
    args = sft_config(config, output_dir=output_dir, device=device, micro_batch_size=micro,
                      grad_accumulation=accumulation, total_steps=total, precision=precision)

    class StaytunedSFTTrainer(SFTTrainer):
        """staytuned's optimizer and classic schedules, created where the HF Trainer creates its own
        (after FSDP/DeepSpeed have wrapped the model)."""

        def create_optimizer(self, model: Any = None) -> Any:
            if self.optimizer is None:
                target: Any = self.model if model is None else model
                params = [p for p in target.parameters() if p.requires_grad]
                self.optimizer = make_optimizer(params, config)
            return self.optimizer

        def create_scheduler(self, num_training_steps: int, optimizer: Any = None) -> Any:
            if config.lr_scheduler in HF_SCHEDULES:
                return super().create_scheduler(num_training_steps, optimizer)
            if self.lr_scheduler is None:
                self.lr_scheduler = build_scheduler(optimizer or self.optimizer, config, total, per_epoch)
            return self.lr_scheduler

    # Our own collator: TRL would otherwise set a missing pad token on the (cached) tokenizer.
    collator = DataCollatorForLanguageModeling(pad_token_id=pad_id(tokenizer))
    with quiet():
        trainer = StaytunedSFTTrainer(model=model, args=args, train_dataset=sft_dataset(examples),
                                      processing_class=tokenizer, data_collator=collator,
                                      callbacks=list(callbacks))
    for noisy in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(noisy)
    return trainer


def sft_train(model: Any, tokenizer: Any, examples: Sequence[Example], config: TrainConfig, *, device: str,
              micro_batch_size: int, precision: PrecisionChoice, stats: TrainStats,
              on_epoch_end: Callable[[int], bool] | None = None,
              on_step: Callable[[int, int, float], None] | None = None, world_size: int = 1,
              keep: list[Any] | None = None) -> TrainStats:
    """Train the parameters of ``model`` that require grad with TRL; fill ``stats`` like
    :func:`staytuned.finetune.loop.train` (raises NonFiniteLoss the same way). ``keep`` receives
    the trainer (the launched path saves through it)."""
    from staytuned.finetune.loop import NonFiniteLoss

    if not examples:
        raise ValueError("no training examples")
    total, per_epoch = train_steps(len(examples), config)
    micro, accumulation = split_batch(config.batch_size, micro_batch_size, world_size)
    stats.micro_batch_size, stats.grad_accumulation = micro, accumulation
    callback = _StatsCallback(stats, total, per_epoch, on_epoch_end, on_step, NonFiniteLoss)
    with tempfile.TemporaryDirectory(prefix="staytuned-trl-") as out, kept_base(model), _python_rng(), \
            _on_device(device):
        trainer = build_trainer(model, tokenizer, examples, config, output_dir=out, device=device,
                                micro_batch_size=micro, precision=precision, world_size=world_size,
                                callbacks=[callback.hf()])
        if keep is not None:
            keep.append(trainer)
        try:
            with quiet():
                trainer.train()
        finally:
            callback.stop_clock()
            stats.train_tokens = int(trainer.state.num_input_tokens_seen)
            stats.steps = int(trainer.state.global_step)
            stats.epochs_done = stats.steps / per_epoch
    model.eval()
    return stats


class _StatsCallback:
    """Fills TrainStats from the HF trainer's events; scores each epoch (``on_epoch_end``) outside
    the training clock and stops training when it says prune or the loss is not finite."""

    def __init__(self, stats: TrainStats, total: int, per_epoch: int, on_epoch_end: Callable[[int], bool] | None,
                 on_step: Callable[[int, int, float], None] | None, nonfinite: type[Exception]) -> None:
        self.stats, self.total, self.per_epoch = stats, total, per_epoch
        self.on_epoch_end, self.on_step, self.nonfinite = on_epoch_end, on_step, nonfinite
        self.started: tuple[float, float] | None = None
        self.epoch = 0

    def start_clock(self) -> None:
        self.started = (time.perf_counter(), time.process_time())

    def stop_clock(self) -> None:
        if self.started is not None:
            self.stats.train_time_s += time.perf_counter() - self.started[0]
            self.stats.train_cpu_s += time.process_time() - self.started[1]
            self.started = None

    def hf(self) -> Any:
        from transformers import TrainerCallback

        outer = self

        class Callback(TrainerCallback):
            def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                outer.start_clock()

            def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None,
                       **kwargs: Any) -> None:
                if not logs or "loss" not in logs:
                    return
                step, loss = int(state.global_step), float(logs["loss"])
                outer.stats.loss_curve.append([step, loss])
                if not math.isfinite(loss):
                    outer.stop_clock()
                    raise outer.nonfinite(step, loss)
                if outer.on_step is not None:
                    outer.on_step(step, outer.total, loss)

            def on_epoch_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
                outer.epoch += 1
                outer.stats.steps = int(state.global_step)
                outer.stats.epochs_done = outer.stats.steps / outer.per_epoch
                if outer.on_epoch_end is None:
                    return
                outer.stop_clock()
                stop = outer.on_epoch_end(outer.epoch)
                if model is not None:
                    model.train()
                outer.start_clock()
                if stop:
                    outer.stats.stopped_by = "pruned"
                    control.should_training_stop = True

            def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                outer.stop_clock()

        return Callback()


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """transformers/TRL/datasets logs, progress bars and warnings off for the block."""
    import datasets
    import transformers

    names = ("transformers", "trl", "datasets", "accelerate")
    levels = {n: logging.getLogger(n).level for n in names}
    verbosity = transformers.logging.get_verbosity()
    bars = datasets.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    datasets.utils.logging.disable_progress_bar()
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars:
            datasets.utils.logging.enable_progress_bar()
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)


@contextlib.contextmanager
def _on_device(device: str) -> Iterator[None]:
    """``cuda:N`` the current CUDA device for the block: the HF trainer places the model there."""
    if not device.startswith("cuda:"):
        yield
        return
    import torch

    with torch.cuda.device(int(device.split(":", 1)[1])):
        yield


@contextlib.contextmanager
def _python_rng() -> Iterator[None]:
    """The HF trainer seeds python's and numpy's global generators; give the caller its own back
    (torch's is forked by the trial run)."""
    import numpy as np

    state, np_state = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(state)
        np.random.set_state(np_state)


_CONFIG_KEYS = ("pad_token_id", "eos_token_id", "use_cache", "output_router_logits", "router_aux_loss_coef")


@contextlib.contextmanager
def kept_base(model: Any) -> Iterator[None]:
    """Undo what TRL does to the model it is given beyond training it: it patches the base
    model's ``forward`` with a chunked LM head and mirrors token ids onto its configs. The base
    is cached and reused by the next trial, so both are restored."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    had_forward = "forward" in vars(base)
    forward = vars(base).get("forward")
    config = base.config.get_text_config() if hasattr(base.config, "get_text_config") else base.config
    generation = getattr(base, "generation_config", None)
    saved = {k: getattr(config, k) for k in _CONFIG_KEYS if hasattr(config, k)}
    saved_generation = {k: getattr(generation, k, None) for k in ("pad_token_id", "eos_token_id")}
    try:
        yield
    finally:
        if had_forward:
            base.forward = forward
        else:
            vars(base).pop("forward", None)
        for k, v in saved.items():
            setattr(config, k, v)
        if generation is not None:
            for k, v in saved_generation.items():
                setattr(generation, k, v)
