"""Scoring a model on task rows: greedy generation, or label log-likelihood for classification.

- Generative tasks (summarization, qa) and ``label_scoring="generate"``: batched greedy decoding
  with left padding; generation stops at EOS or the chat template's end-of-turn token; at most
  :data:`MAX_NEW_TOKENS` new tokens per task type (classification: the longest label + 2).
- ``label_scoring="loglik"`` (classification default): every label is scored as the answer,
  i.e. the label text followed by the end-of-turn text, after the prompt; the prediction is the
  label with the highest total log-probability (the most likely complete answer, so a label
  that is a prefix of another is not favoured). The prompt is run once with the KV cache and
  all labels are scored as continuations of it. The cost grows with the number of labels.

Prompts are cut to ``max_seq_length`` like training prompts (the middle goes).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from staytuned.finetune.loop import (
    MIN_SHARED_PREFIX,
    can_share_prefix,
    cut_middle,
    left_pad,
    resolve_precision,
    shared_prefix_len,
)

if TYPE_CHECKING:
    from staytuned.hardware.precision import PrecisionChoice

MAX_NEW_TOKENS = {"summarization": 64, "qa": 32}
LABEL_SCORINGS = ("loglik", "generate")
#: Rows (prompt x label pairs) scored at once in loglik mode, and the token budget of a batch.
LOGLIK_ROWS = 64
EVAL_TOKEN_BUDGET = {"cpu": 4096, "cuda": 32768}

Progress = Callable[[int, int], None]


@dataclass
class EvalOutput:
    predictions: list[str]
    metrics: dict[str, float]
    runtime_s: float


def evaluate(
    model: Any,
    tokenizer: Any,
    task: Any,
    rows: Sequence[dict],
    *,
    label_scoring: str = "loglik",
    max_seq_length: int = 512,
    template: str | None = None,
    device: Any = None,
    progress: Progress | None = None,
    precision: str | PrecisionChoice = "fp32",
) -> EvalOutput:
    """Predict every row and compute the task's metrics (see :mod:`staytuned.tasks.metrics`).

    ``precision``: auto, fp32, bf16, fp16 or a decided ``PrecisionChoice``; the model runs under
    that autocast (``run_trial`` passes the choice its training used).
    """
    import time

    import torch

    from staytuned.tasks import build_prompt, completion_suffix, compute_metrics

    started = time.perf_counter()
    if label_scoring not in LABEL_SCORINGS:
        from staytuned.errors import InputError

        raise InputError("unknown label scoring", field="label_scoring", value=label_scoring,
                         expected=" | ".join(LABEL_SCORINGS))
    device = device or next(model.parameters()).device
    suffix = completion_suffix(tokenizer)
    prompts = [build_prompt(task, row, tokenizer, template=template) for row in rows]
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"] if prompts else []
    was_training = model.training
    model.eval()
    device_type = "cuda" if str(device).startswith("cuda") else "cpu"
    choice = resolve_precision(precision, device)
    with torch.inference_mode(), torch.autocast(device_type=device_type, dtype=choice.torch_dtype(),
                                                enabled=choice.autocast):
        if task.type == "classification" and label_scoring == "loglik":
            predictions = _loglik_labels(model, tokenizer, prompt_ids, list(task.labels), suffix,
                                         max_seq_length, device, progress)
        else:
            if task.type == "classification":
                label_len = max(len(tokenizer(lab + suffix, add_special_tokens=False)["input_ids"])
                                for lab in task.labels)
                max_new = label_len + 2
            else:
                max_new = MAX_NEW_TOKENS[task.type]
            predictions = _generate(model, tokenizer, prompt_ids, max_new, suffix, max_seq_length,
                                    device, progress)
    if was_training:
        model.train()
    metrics = compute_metrics(task, predictions, task.references(rows)) if rows else {}
    return EvalOutput(predictions, metrics, time.perf_counter() - started)


def _budget(device: Any) -> int:
    return EVAL_TOKEN_BUDGET["cuda" if str(device).startswith("cuda") else "cpu"]


def _length_batches(lengths: Sequence[int], budget: int, max_rows: int) -> list[list[int]]:
    """Indices sorted by length (longest first) cut into batches of at most ``budget`` padded tokens."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        width = lengths[current[0]] if current else lengths[i]
        if (current and (len(current) + 1) * max(width, 1) > budget) or len(current) >= max_rows:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def label_logliks(model: Any, tokenizer: Any, prompt_ids: Sequence[Sequence[int]], labels: Sequence[str],
                  suffix: str = "", max_len: int = 512, device: Any = None,
                  progress: Progress | None = None) -> Any:
    """Log-probability of each ``label + suffix`` as the continuation of each prompt: (n_prompts, n_labels).

    The start shared by all prompts runs once; each batch of prompt tails runs on a copy of its
    KV cache; that cache is repeated once per label and all label continuations (right-padded)
    are scored in one more forward pass. The first label token is scored from the prompt's
    last logits.
    """
    import torch

    with torch.inference_mode():
        return _label_logliks(model, tokenizer, prompt_ids, labels, suffix, max_len,
                              device or next(model.parameters()).device, progress)


def _label_logliks(model: Any, tokenizer: Any, prompt_ids: Sequence[Sequence[int]], labels: Sequence[str],
                   suffix: str, max_len: int, device: Any, progress: Progress | None) -> Any:
    import torch

    label_ids = [tokenizer(lab + suffix, add_special_tokens=False)["input_ids"] for lab in labels]
    longest_label = max(len(ids) for ids in label_ids)
    prompts = [cut_middle(p, max(1, max_len - longest_label)) for p in prompt_ids]
    n_labels = len(labels)
    rows_per_batch = max(1, LOGLIK_ROWS // n_labels)
    pad = _pad(tokenizer)
    lab_in, lab_mask, _ = _right_pad([ids[:-1] for ids in label_ids], pad)
    lab_gold, gold_mask, _ = _right_pad([ids[1:] for ids in label_ids], pad)
    first = torch.tensor([ids[0] for ids in label_ids])
    lab_in, lab_mask, lab_gold, gold_mask, first = (
        t.to(device) for t in (lab_in, lab_mask, lab_gold, gold_mask, first))
    scores = torch.zeros((len(prompts), n_labels), dtype=torch.float32)
    # Prompts of one task share a long start (system prompt, instruction, label list): run it
    # once and reuse its KV cache, so only each prompt's own tail is computed.
    n_prefix = shared_prefix_len(prompts)
    longest = max((len(p) for p in prompts), default=0) + longest_label
    prefix_cache = None
    if n_prefix >= MIN_SHARED_PREFIX and can_share_prefix(model, longest, training=False):
        prefix_ids = torch.tensor([prompts[0][:n_prefix]], device=device)
        prefix_cache = model(input_ids=prefix_ids, use_cache=True, **_keep(model, 1)).past_key_values
    else:
        n_prefix = 0
    done = 0
    for idx in _length_batches([len(p) for p in prompts], _budget(device), rows_per_batch):
        b = len(idx)
        ids, mask, pos = (t.to(device) for t in left_pad([prompts[i][n_prefix:] for i in idx], pad))
        cache = None
        if prefix_cache is not None:
            # [shared prefix | padding | own tail]: padding in the middle is masked out.
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(b)
            mask = torch.cat([torch.ones((b, n_prefix), dtype=mask.dtype, device=device), mask], dim=1)
            pos = pos + n_prefix
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache,
                    use_cache=True, **_keep(model, 1))
        batch = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)[:, first]  # (B, n_labels)
        if lab_in.shape[1] > 0:
            cache = out.past_key_values
            cache.batch_repeat_interleave(n_labels)
            cont_ids = lab_in.repeat(b, 1)
            cont_mask = torch.cat([mask.repeat_interleave(n_labels, dim=0), lab_mask.repeat(b, 1)], dim=1)
            start = mask.sum(-1).repeat_interleave(n_labels).unsqueeze(1)
            cont_pos = start + torch.arange(cont_ids.shape[1], device=device).unsqueeze(0)
            logits = model(input_ids=cont_ids, attention_mask=cont_mask, position_ids=cont_pos,
                           past_key_values=cache, use_cache=True).logits.float()
            logp = torch.log_softmax(logits, dim=-1).gather(-1, lab_gold.repeat(b, 1).unsqueeze(-1)).squeeze(-1)
            batch = batch + (logp * gold_mask.repeat(b, 1)).sum(-1).view(b, n_labels)
            del cache, out
        scores[torch.tensor(idx)] = batch.cpu()
        done += len(idx)
        if progress is not None:
            progress(done, len(prompts))
    return scores


def _loglik_labels(model: Any, tokenizer: Any, prompt_ids: list[list[int]], labels: list[str],
                   suffix: str, max_len: int, device: Any, progress: Progress | None) -> list[str]:
    scores = label_logliks(model, tokenizer, prompt_ids, labels, suffix, max_len, device, progress)
    return [labels[j] for j in scores.argmax(-1).tolist()]


def _pad(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return int(pad if pad is not None else 0)


def _right_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any, int]:
    import torch

    width = max((len(s) for s in seqs), default=0)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(list(s), dtype=torch.long)
        mask[i, :len(s)] = 1
    return ids, mask, width


def _keep(model: Any, n: int) -> dict[str, int]:
    from staytuned.finetune.loop import supports_logits_to_keep

    return {"logits_to_keep": n} if supports_logits_to_keep(model) else {}


def _stop_ids(tokenizer: Any, suffix: str) -> list[int]:
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    suffix_ids = tokenizer(suffix, add_special_tokens=False)["input_ids"] if suffix else []
    if len(suffix_ids) == 1 and suffix_ids[0] not in ids:
        ids.append(suffix_ids[0])
    return ids


def _generate(model: Any, tokenizer: Any, prompt_ids: list[list[int]], max_new: int, suffix: str,
              max_len: int, device: Any, progress: Progress | None) -> list[str]:
    prompts = [cut_middle(p, max_len) for p in prompt_ids]
    stop = _stop_ids(tokenizer, suffix)
    predictions: list[str] = [""] * len(prompts)
    done = 0
    for idx in _length_batches([len(p) + max_new for p in prompts], _budget(device), 64):
        ids, mask, _ = (t.to(device) for t in left_pad([prompts[i] for i in idx], _pad(tokenizer)))
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new, do_sample=False,
                             num_beams=1, pad_token_id=_pad(tokenizer), eos_token_id=stop or None,
                             temperature=None, top_p=None, top_k=None)
        for row, i in enumerate(idx):
            text = tokenizer.decode(out[row, ids.shape[1]:], skip_special_tokens=True)
            if suffix and suffix in text:
                text = text.split(suffix, 1)[0]
            predictions[i] = text.strip()
        done += len(idx)
        if progress is not None:
            progress(done, len(prompts))
    return predictions
