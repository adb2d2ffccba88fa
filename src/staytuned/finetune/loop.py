"""A lean PyTorch training loop for causal LMs: loss on target tokens only.

Why hand-written: one trial is a few hundred optimizer steps on small data, where a general
trainer's per-step overhead is a measurable share; this loop does only what a trial needs.

- Each example is ``prompt + target`` token ids; the loss is the mean cross-entropy over the
  target tokens of the effective batch (prompt tokens are masked, as with label -100).
- Batches are left-padded, so the target tokens sit at the end of every row and only the last
  ``max_target_len + 1`` positions go through the LM head (``logits_to_keep``): with a 49k
  vocabulary that head is a fifth of the model's compute.
- Length grouping: each epoch shuffles the examples, cuts the order into mega-batches of
  :data:`MEGABATCH_FACTOR` effective batches, sorts each mega-batch by length and cuts it into
  effective batches, whose order is shuffled again (less padding, still random batches).
- The effective batch is split into micro-batches of at most ``micro_batch_size`` examples
  (gradient accumulation); on out-of-memory the micro-batch is halved and the step retried.
- Gradients are clipped to norm :data:`MAX_GRAD_NORM` (the transformers Trainer default).
- Non-finite loss stops training at once; the step is recorded.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from staytuned.finetune.schedules import build_scheduler
from staytuned.hparams.train import TrainConfig

if TYPE_CHECKING:
    from staytuned.hardware.precision import PrecisionChoice

MAX_GRAD_NORM = 1.0
MEGABATCH_FACTOR = 16
#: Token budget of one micro-batch when ``micro_batch_size`` is not given (CPU, GPU).
CPU_TOKEN_BUDGET = 2048
#: A common prompt start shorter than this is not worth a separate forward pass.
MIN_SHARED_PREFIX = 4
GPU_TOKEN_BUDGET = 16384


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""

    def __init__(self, step: int, value: float) -> None:
        super().__init__(f"training loss became {value} at optimizer step {step}; training stopped")
        self.step, self.value = step, value


class OutOfMemory(RuntimeError):
    """Even a micro-batch of one example does not fit in memory."""


@dataclass
class Example:
    """Token ids of ``prompt + target``; the target is ``input_ids[n_prompt:]``."""

    input_ids: list[int]
    n_prompt: int

    @property
    def n_target(self) -> int:
        return len(self.input_ids) - self.n_prompt


@dataclass
class TrainStats:
    loss_curve: list[list[float]] = field(default_factory=list)  # [step, mean target-token loss]
    steps: int = 0
    epochs_done: float = 0.0
    train_tokens: int = 0  # non-pad tokens (prompt + target) that went through forward + backward
    train_time_s: float = 0.0
    train_cpu_s: float = 0.0  # process CPU time of the same spans (all threads)
    micro_batch_size: int = 0
    grad_accumulation: int = 0
    stopped_by: str | None = None  # "pruned" when on_epoch_end asked to stop
    shared_prefix_tokens: int = 0  # prompt start common to all examples, run once per micro-batch


def fit_lengths(prompt: Sequence[int], target: Sequence[int], max_len: int) -> tuple[list[int], list[int]]:
    """Cut ``prompt + target`` to ``max_len`` tokens.

    The target keeps its start and at most ``max_len // 2`` tokens (less if the prompt is short);
    the prompt loses its middle, so the instruction at its start and the answer cue (e.g. the
    chat template's assistant header) at its end survive.
    """
    prompt, target = list(prompt), list(target)
    if len(prompt) + len(target) <= max_len:
        return prompt, target
    target = target[: max(1, max_len - len(prompt), max_len // 2)]
    return cut_middle(prompt, max_len - len(target)), target


def cut_middle(seq: Sequence[int], budget: int) -> list[int]:
    """``seq`` without its middle so that at most ``budget`` items remain (start and end kept)."""
    seq = list(seq)
    if len(seq) <= budget:
        return seq
    if budget <= 0:
        return []
    head = budget // 2
    return seq[:head] + seq[len(seq) - (budget - head):]


def encode_pairs(
    pairs: Sequence[tuple[str, str]], tokenizer: Any, max_len: int, suffix: str = ""
) -> list[Example]:
    """Tokenize ``(prompt, target)`` pairs; ``suffix`` (end of turn) is appended to each target.

    Prompt and target are tokenized separately (no special tokens added: the chat template
    already wrote them), exactly as prompts are tokenized at evaluation.
    """
    prompts = tokenizer([p for p, _ in pairs], add_special_tokens=False)["input_ids"]
    targets = tokenizer([t + suffix for _, t in pairs], add_special_tokens=False)["input_ids"]
    examples = []
    for p, t in zip(prompts, targets, strict=True):
        p, t = fit_lengths(p, t, max_len)
        examples.append(Example(p + t, len(p)))
    return examples


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any, Any]:
    """``(input_ids, attention_mask, position_ids)`` tensors, left-padded; positions start at 0."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, positions


def supports_logits_to_keep(model: Any) -> bool:
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return "logits_to_keep" in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return False


def shared_prefix_len(prompts: Sequence[Sequence[int]]) -> int:
    """Tokens shared by the start of every prompt, leaving each prompt at least one of its own."""
    if len(prompts) < 2:
        return 0
    first, n = prompts[0], min(len(p) for p in prompts) - 1
    for p in prompts[1:]:
        k = 0
        while k < n and p[k] == first[k]:
            k += 1
        n = k
    return max(0, n)


def can_share_prefix(model: Any, longest: int, *, training: bool = True) -> bool:
    """Whether ``model`` may run a shared prefix once and its rows on copies of its KV cache.

    Not when training under gradient checkpointing (transformers turns the cache off there) and
    not past a sliding window (the middle padding of the rows shifts their cache positions).
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if training and getattr(base, "is_gradient_checkpointing", False):
        return False
    window = getattr(getattr(base, "config", None), "sliding_window", None)
    return not window or longest <= window


def target_loss_sum(model: Any, batch: Sequence[Example], pad_id: int, device: Any,
                    keep_logits: bool, n_prefix: int = 0) -> tuple[Any, int]:
    """Summed cross-entropy over the target tokens of ``batch`` and the number of those tokens.

    ``n_prefix`` > 0: the first ``n_prefix`` tokens are the same in every row (the system prompt
    and instruction of a template, see :func:`shared_prefix_len`). They run once, with gradients,
    and every row continues from that KV cache: the loss and gradients are those of the full
    rows (up to float rounding), at the cost of one prefix instead of one per row. Only the
    dropout masks on the prefix are then shared by the rows of the micro-batch.
    """
    import torch
    import torch.nn.functional as F

    cache = None
    if n_prefix > 0:
        prefix = torch.tensor([batch[0].input_ids[:n_prefix]], device=device)
        cache = model(input_ids=prefix, use_cache=True, **({"logits_to_keep": 1} if keep_logits else {})
                      ).past_key_values
        cache.batch_repeat_interleave(len(batch))
    ids, mask, pos = left_pad([e.input_ids[n_prefix:] for e in batch], pad_id)
    width = ids.shape[1]
    keep = max(e.n_target for e in batch) + 1
    labels = torch.full_like(ids, -100)
    for i, e in enumerate(batch):
        if e.n_target:
            labels[i, width - e.n_target:] = ids[i, width - e.n_target:]
    ids, mask, pos, labels = (t.to(device) for t in (ids, mask, pos, labels))
    kwargs: dict[str, Any] = {"logits_to_keep": keep} if keep_logits else {}
    if cache is not None:
        # [shared prefix | padding | own tail]: the padding in the middle is masked out.
        mask = torch.cat([torch.ones((len(batch), n_prefix), dtype=mask.dtype, device=device), mask], dim=1)
        pos = pos + n_prefix
        kwargs.update(past_key_values=cache, use_cache=True)
    else:
        kwargs["use_cache"] = False
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, **kwargs).logits
    logits = logits[:, -keep:, :]
    shifted = logits[:, :-1, :].float()
    gold = labels[:, width - keep + 1:]
    loss = F.cross_entropy(shifted.reshape(-1, shifted.shape[-1]), gold.reshape(-1),
                           ignore_index=-100, reduction="sum")
    return loss, int((gold != -100).sum())


def epoch_batches(n: int, batch_size: int, lengths: Sequence[int], rng: random.Random) -> list[list[int]]:
    """Effective batches (example indices) of one epoch, length-grouped inside mega-batches."""
    order = list(range(n))
    rng.shuffle(order)
    mega = batch_size * MEGABATCH_FACTOR
    batches: list[list[int]] = []
    for start in range(0, n, mega):
        chunk = sorted(order[start:start + mega], key=lambda i: lengths[i], reverse=True)
        group = [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
        rng.shuffle(group)
        batches.extend(group)
    return batches


def make_optimizer(params: list[Any], config: TrainConfig) -> Any:
    """adamw / sgd (momentum 0.9) / adafactor; weight decay only on matrices (not biases or norms)."""
    import torch

    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    lr = config.peak_lr
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9)
    from transformers.optimization import Adafactor

    return Adafactor(groups, lr=lr, scale_parameter=False, relative_step=False, warmup_init=False)


def is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def resolve_precision(precision: str | PrecisionChoice | None, device: Any) -> PrecisionChoice:
    """A :class:`~staytuned.hardware.precision.PrecisionChoice` as is, else the hardware decision."""
    from staytuned.hardware.precision import PrecisionChoice, choose_precision

    if isinstance(precision, PrecisionChoice):
        return precision
    return choose_precision(precision, device)


def default_micro_batch(examples: Sequence[Example], batch_size: int, device: Any) -> int:
    longest = max((len(e.input_ids) for e in examples), default=1)
    budget = GPU_TOKEN_BUDGET if str(device).startswith("cuda") else CPU_TOKEN_BUDGET
    return max(1, min(batch_size, budget // max(1, longest)))


def train(
    model: Any,
    examples: Sequence[Example],
    config: TrainConfig,
    *,
    pad_id: int,
    device: Any,
    micro_batch_size: int | None = None,
    precision: str | PrecisionChoice = "auto",
    on_epoch_end: Callable[[int], bool] | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
    stats: TrainStats | None = None,
) -> TrainStats:
    """Train the parameters of ``model`` that require grad; return the loss curve and counters.

    ``precision``: auto, fp32, bf16, fp16 or a decided ``PrecisionChoice`` (see
    :mod:`staytuned.hardware.precision`); fp16 scales the loss with ``torch.amp.GradScaler``.

    ``on_epoch_end(epoch)`` (1-based) runs after every epoch, the last (partial) one included;
    returning True stops training (pruning). ``on_step(step, total_steps, loss)`` reports progress.
    Raises :class:`NonFiniteLoss` and :class:`OutOfMemory`; pass ``stats`` to keep the partial
    loss curve when they are raised.
    """
    import torch

    stats = stats if stats is not None else TrainStats()
    if not examples:
        raise ValueError("no training examples")
    n = len(examples)
    steps_per_epoch = math.ceil(n / config.batch_size)
    total_steps = max(1, math.ceil(config.epochs * steps_per_epoch))
    n_epochs = math.ceil(total_steps / steps_per_epoch)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    optimizer = make_optimizer(params, config)
    scheduler = build_scheduler(optimizer, config, total_steps, steps_per_epoch)
    micro = micro_batch_size or default_micro_batch(examples, config.batch_size, device)
    stats.micro_batch_size, stats.grad_accumulation = micro, math.ceil(config.batch_size / micro)
    device_type = "cuda" if str(device).startswith("cuda") else "cpu"
    choice = resolve_precision(precision, device)
    amp = _Amp(choice, device_type)
    keep_logits = supports_logits_to_keep(model)
    lengths = [len(e.input_ids) for e in examples]
    n_prefix = shared_prefix_len([e.input_ids[:e.n_prompt] for e in examples])
    if n_prefix < MIN_SHARED_PREFIX or not can_share_prefix(model, max(lengths)):
        n_prefix = 0
    stats.shared_prefix_tokens = n_prefix
    rng = random.Random(config.seed)
    model.train()
    step = 0
    started, cpu_started = time.perf_counter(), time.process_time()

    def clock() -> None:  # add the span since the last restart to the training time
        stats.train_time_s += time.perf_counter() - started
        stats.train_cpu_s += time.process_time() - cpu_started
    for epoch in range(1, n_epochs + 1):
        for batch_idx in epoch_batches(n, config.batch_size, lengths, rng):
            if step >= total_steps:
                break
            batch = [examples[i] for i in batch_idx]
            n_target = sum(e.n_target for e in batch)
            while True:
                try:
                    loss_value, tokens = _accumulate(model, batch, n_target, micro, pad_id, device,
                                                     keep_logits, amp, n_prefix)
                    break
                except Exception as exc:
                    if not is_oom(exc):
                        raise
                    optimizer.zero_grad(set_to_none=True)
                    _empty_device_cache()
                    if micro == 1:
                        raise OutOfMemory(f"out of memory even with a micro-batch of 1: {exc}") from None
                    micro = max(1, micro // 2)
                    stats.micro_batch_size, stats.grad_accumulation = micro, math.ceil(config.batch_size / micro)
            if not math.isfinite(loss_value):
                clock()
                stats.loss_curve.append([step + 1, loss_value])
                raise NonFiniteLoss(step + 1, loss_value)
            amp.unscale(optimizer)
            torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
            if amp.step(optimizer):
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            stats.train_tokens += tokens
            stats.loss_curve.append([step, loss_value])
            if on_step is not None:
                on_step(step, total_steps, loss_value)
        stats.steps = step
        stats.epochs_done = step / steps_per_epoch
        if on_epoch_end is not None:
            clock()
            stop = on_epoch_end(epoch)
            model.train()
            started, cpu_started = time.perf_counter(), time.process_time()
            if stop:
                stats.stopped_by = "pruned"
                break
        if step >= total_steps:
            break
    if on_epoch_end is None:
        clock()
    model.eval()
    return stats


class _Amp:
    """Autocast and (fp16) loss scaling of one training run, as the precision choice says."""

    def __init__(self, choice: PrecisionChoice, device_type: str) -> None:
        import torch

        self.choice, self.device_type = choice, device_type
        self.dtype = choice.torch_dtype()
        self.scaler = torch.amp.GradScaler(device_type) if choice.grad_scaler else None

    def autocast(self) -> Any:
        import torch

        return torch.autocast(device_type=self.device_type, dtype=self.dtype, enabled=self.choice.autocast)

    def backward(self, loss: Any) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer: Any) -> None:
        # Gradients must be unscaled before clipping, or the clip norm would apply to scaled values.
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: Any) -> bool:
        """Step the optimizer; False when the loss scaler skipped it (overflowing fp16 gradients)."""
        if self.scaler is None:
            optimizer.step()
            return True
        scale = self.scaler.get_scale()
        self.scaler.step(optimizer)
        self.scaler.update()
        # The scale drops only after an overflow; the schedule then waits too, as in transformers.
        return self.scaler.get_scale() >= scale


def _accumulate(model: Any, batch: list[Example], n_target: int, micro: int, pad_id: int, device: Any,
                keep_logits: bool, amp: _Amp, n_prefix: int = 0) -> tuple[float, int]:
    """Forward + backward of one effective batch in micro-batches; returns (mean loss, tokens)."""
    total = 0.0
    tokens = 0
    for start in range(0, len(batch), micro):
        part = batch[start:start + micro]
        with amp.autocast():
            # A lone row gains nothing from a shared prefix.
            loss_sum, _ = target_loss_sum(model, part, pad_id, device, keep_logits,
                                          n_prefix if len(part) > 1 else 0)
        loss = loss_sum / max(1, n_target)
        value = float(loss.detach())
        if not math.isfinite(value):
            return value, tokens
        amp.backward(loss)
        total += value
        tokens += sum(len(e.input_ids) for e in part)
    return total, tokens


def _empty_device_cache() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
