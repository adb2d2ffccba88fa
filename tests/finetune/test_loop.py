"""Trainer pieces: truncation, padding, batching, target-only loss, OOM back-off, learning."""

from __future__ import annotations

import random

import pytest

torch = pytest.importorskip("torch")

from staytuned.finetune import loop  # noqa: E402
from staytuned.finetune.loop import (  # noqa: E402
    Example,
    cut_middle,
    encode_pairs,
    epoch_batches,
    fit_lengths,
    left_pad,
    shared_prefix_len,
    target_loss_sum,
    train,
)
from staytuned.hparams.train import TrainConfig  # noqa: E402
from staytuned.models import load_model  # noqa: E402


def test_cut_middle_keeps_both_ends() -> None:
    assert cut_middle([1, 2, 3, 4, 5, 6, 7], 4) == [1, 2, 6, 7]
    assert cut_middle([1, 2, 3, 4, 5], 3) == [1, 4, 5]
    assert cut_middle([1, 2], 5) == [1, 2]
    assert cut_middle([1, 2], 0) == []


def test_fit_lengths() -> None:
    assert fit_lengths([1, 2, 3], [9], 8) == ([1, 2, 3], [9])
    # long prompt: target kept whole, prompt loses its middle
    assert fit_lengths(list(range(10)), [90, 91], 6) == ([0, 1, 8, 9], [90, 91])
    # long target: cut to max_len // 2 at most when the prompt needs the room
    assert fit_lengths(list(range(10)), list(range(100, 120)), 8) == ([0, 1, 8, 9], [100, 101, 102, 103])
    # short prompt: the target may use the rest
    assert fit_lengths([1], list(range(100, 120)), 8) == ([1], list(range(100, 107)))


def test_left_pad_positions_start_at_zero() -> None:
    ids, mask, pos = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert pos.tolist() == [[0, 1, 2], [0, 0, 0]]


def test_epoch_batches_cover_every_example_once_and_group_lengths() -> None:
    gen = random.Random(1)
    lengths = [gen.randint(1, 100) for _ in range(100)]
    batches = epoch_batches(100, 8, lengths, random.Random(0))
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(100))
    assert sorted(len(b) for b in batches)[1:] == [8] * 12  # 100 = 12 x 8 + 4
    # inside a mega-batch the examples are sorted by length: less padding than random batches
    pad = sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)
    rnd = list(range(100))
    random.Random(0).shuffle(rnd)
    pad_random = sum(max(lengths[i] for i in rnd[k:k + 8]) * len(rnd[k:k + 8]) - sum(lengths[i] for i in rnd[k:k + 8])
                     for k in range(0, 100, 8))
    assert pad < pad_random / 3


def test_encode_pairs_appends_suffix_and_truncates() -> None:
    _, tok = load_model("tiny-llama", device="cpu")
    ex = encode_pairs([("abc", "yes"), ("x" * 50, "no")], tok, 16, suffix="</s>")
    assert ex[0].input_ids == (tok("abc", add_special_tokens=False)["input_ids"]
                               + tok("yes</s>", add_special_tokens=False)["input_ids"])
    assert ex[0].n_prompt == 3 and ex[0].n_target == 4
    assert len(ex[1].input_ids) == 16 and ex[1].n_target == 3


@pytest.mark.parametrize("ref", ["tiny-llama", "tiny-mistral"])
def test_target_loss_matches_reference_per_example_loss(ref: str) -> None:
    """Left padding + logits_to_keep must give exactly the HF loss on unpadded rows, targets only."""
    model, tok = load_model(ref, device="cpu")
    batch = [Example(list(range(10, 40)), 26), Example(list(range(50, 62)), 9), Example(list(range(70, 75)), 3)]
    with torch.no_grad():
        total, n = target_loss_sum(model, batch, tok.pad_token_id, "cpu", keep_logits=True)
        want = 0.0
        for e in batch:
            ids = torch.tensor([e.input_ids])
            labels = ids.clone()
            labels[0, :e.n_prompt] = -100
            want += float(model(input_ids=ids, labels=labels).loss) * e.n_target
        full, _ = target_loss_sum(model, batch, tok.pad_token_id, "cpu", keep_logits=False)
    assert n == 4 + 3 + 2
    assert float(total) == pytest.approx(want, rel=1e-4)
    assert float(full) == pytest.approx(want, rel=1e-4)


@pytest.mark.parametrize("ref", ["tiny-llama", "tiny-mistral"])
def test_shared_prefix_gives_the_loss_and_gradients_of_full_rows(ref: str) -> None:
    """The prompt start common to a batch runs once; loss and gradients must not change."""
    model, tok = load_model(ref, device="cpu")
    for p in model.parameters():
        p.requires_grad_(True)
    head = list(range(100, 120))
    batch = [Example(head + list(range(10, 30)), 36), Example(head + list(range(50, 57)), 24),
             Example(head + list(range(70, 73)), 21)]
    assert shared_prefix_len([e.input_ids[:e.n_prompt] for e in batch]) == len(head)

    def loss_and_grads(n_prefix: int) -> tuple[float, list]:
        model.zero_grad(set_to_none=True)
        total, n = target_loss_sum(model, batch, tok.pad_token_id, "cpu", keep_logits=True, n_prefix=n_prefix)
        assert n == 4 + 3 + 2
        total.backward()
        return float(total), [p.grad.clone() for p in model.parameters()]

    whole, g_whole = loss_and_grads(0)
    shared, g_shared = loss_and_grads(len(head))
    assert shared == pytest.approx(whole, rel=1e-5)
    for a, b in zip(g_whole, g_shared, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_training_runs_the_shared_prefix_once_per_micro_batch(monkeypatch: pytest.MonkeyPatch,
                                                              forward_inputs) -> None:
    model, tok = load_model("tiny-llama", device="cpu")
    for p in model.parameters():
        p.requires_grad_(True)
    pairs = [(f"Classify the following text as yes or no. Text: {i} {'yes' if i % 2 else 'no'}",
              "yes" if i % 2 else "no") for i in range(16)]
    examples = encode_pairs(pairs, tok, 64, suffix="</s>")
    n_prefix = shared_prefix_len([e.input_ids[:e.n_prompt] for e in examples])
    assert n_prefix >= loop.MIN_SHARED_PREFIX
    shapes = forward_inputs(model)
    cfg = TrainConfig(method="full", learning_rate=3e-3, batch_size=8, epochs=2, lr_scheduler="constant")
    stats = train(model, examples, cfg, pad_id=tok.pad_token_id, device="cpu", micro_batch_size=4)
    assert stats.shared_prefix_tokens == n_prefix
    assert [rows for rows, _ in shapes] == [1, 4] * 8  # per micro-batch: the prefix (one row), then its 4 rows
    # the same run without sharing follows the same loss curve
    model2, _ = load_model("tiny-llama", device="cpu")
    for p in model2.parameters():
        p.requires_grad_(True)
    monkeypatch.setattr(loop, "MIN_SHARED_PREFIX", 10_000)
    plain = train(model2, examples, cfg, pad_id=tok.pad_token_id, device="cpu", micro_batch_size=4)
    assert plain.shared_prefix_tokens == 0
    for (_, a), (_, b) in zip(stats.loss_curve, plain.loss_curve, strict=True):
        assert a == pytest.approx(b, rel=1e-3, abs=1e-4)


def _examples(tok, n: int = 16) -> list[Example]:
    pairs = [(f"{'yes' if i % 2 else 'no'} {i}", "yes" if i % 2 else "no") for i in range(n)]
    return encode_pairs(pairs, tok, 64, suffix="</s>")


def test_training_lowers_the_loss_full_and_grad_accumulation_is_exact() -> None:
    model, tok = load_model("tiny-llama", device="cpu")
    for p in model.parameters():
        p.requires_grad_(True)
    cfg = TrainConfig(method="full", learning_rate=3e-3, batch_size=8, epochs=6, lr_scheduler="constant")
    stats = train(model, _examples(tok), cfg, pad_id=tok.pad_token_id, device="cpu", micro_batch_size=8)
    assert stats.steps == 12 and len(stats.loss_curve) == 12 and stats.epochs_done == 6
    assert stats.loss_curve[-1][1] < 0.5 * stats.loss_curve[0][1]
    assert stats.micro_batch_size == 8 and stats.grad_accumulation == 1
    # same data and seed with micro-batches of 3 (accumulation 3): same first-step loss and close curve
    model2, _ = load_model("tiny-llama", device="cpu")
    for p in model2.parameters():
        p.requires_grad_(True)
    stats2 = train(model2, _examples(tok), cfg, pad_id=tok.pad_token_id, device="cpu", micro_batch_size=3)
    assert stats2.grad_accumulation == 3
    assert stats2.loss_curve[0][1] == pytest.approx(stats.loss_curve[0][1], rel=1e-5)
    assert stats2.loss_curve[-1][1] == pytest.approx(stats.loss_curve[-1][1], rel=1e-2, abs=1e-3)


def test_fractional_epochs_and_epoch_callback() -> None:
    model, tok = load_model("tiny-llama", device="cpu")
    for p in model.parameters():
        p.requires_grad_(True)
    seen: list[int] = []
    cfg = TrainConfig(method="full", batch_size=4, epochs=1.5)
    stats = train(model, _examples(tok), cfg, pad_id=tok.pad_token_id, device="cpu",
                  on_epoch_end=lambda e: seen.append(e) or False)
    assert stats.steps == 6 and seen == [1, 2]  # 4 steps per epoch, 1.5 epochs
    assert stats.epochs_done == 1.5
    stop = train(model, _examples(tok), TrainConfig(method="full", batch_size=4, epochs=3),
                 pad_id=tok.pad_token_id, device="cpu", on_epoch_end=lambda e: e == 1)
    assert stop.stopped_by == "pruned" and stop.steps == 4


def test_out_of_memory_halves_the_micro_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    model, tok = load_model("tiny-llama", device="cpu")
    for p in model.parameters():
        p.requires_grad_(True)
    real = loop.target_loss_sum
    sizes: list[int] = []

    def fake(model, batch, *args, **kwargs):
        sizes.append(len(batch))
        if len(batch) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, batch, *args, **kwargs)

    monkeypatch.setattr(loop, "target_loss_sum", fake)
    cfg = TrainConfig(method="full", batch_size=8, epochs=1)
    stats = train(model, _examples(tok), cfg, pad_id=tok.pad_token_id, device="cpu", micro_batch_size=8)
    assert sizes[:3] == [8, 4, 2] and stats.micro_batch_size == 2 and stats.grad_accumulation == 4
    assert stats.steps == 2

    def always(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 GB")

    monkeypatch.setattr(loop, "target_loss_sum", always)
    with pytest.raises(loop.OutOfMemory, match="micro-batch of 1"):
        train(model, _examples(tok), cfg, pad_id=tok.pad_token_id, device="cpu", micro_batch_size=2)


def test_non_finite_loss_stops_at_once() -> None:
    model, tok = load_model("tiny-llama", device="cpu")
    for p in model.parameters():
        p.requires_grad_(True)
    stats = loop.TrainStats()
    with pytest.raises(loop.NonFiniteLoss) as info:
        train(model, _examples(tok), TrainConfig(method="full", learning_rate=1e30, batch_size=4, epochs=3),
              pad_id=tok.pad_token_id, device="cpu", stats=stats)
    assert info.value.step == len(stats.loss_curve) and info.value.step < 12
    assert stats.loss_curve[-1][0] == info.value.step
