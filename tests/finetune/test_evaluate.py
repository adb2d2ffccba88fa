"""Evaluation: cached label log-likelihoods equal brute force; generation is greedy and batched."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from staytuned.finetune.evaluate import evaluate, label_logliks  # noqa: E402
from staytuned.finetune.loop import shared_prefix_len  # noqa: E402
from staytuned.models import load_model  # noqa: E402
from staytuned.tasks import load_task  # noqa: E402


def _brute_force(model, tok, prompt: list[int], label: str, suffix: str) -> float:
    cont = tok(label + suffix, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt + cont])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    return sum(float(logp[len(prompt) - 1 + k, t]) for k, t in enumerate(cont))


@pytest.mark.parametrize("ref", ["tiny-llama", "tiny-mistral"])
def test_label_logliks_equal_brute_force(ref: str) -> None:
    model, tok = load_model(ref, device="cpu")
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in ["short", "a longer prompt here", "x" * 90]]
    labels = ["no", "yes", "maybe not", "n"]  # different lengths, shared prefixes
    scores = label_logliks(model, tok, prompts, labels, suffix="</s>", max_len=512, device="cpu")
    assert scores.shape == (3, 4)
    for i, p in enumerate(prompts):
        for j, lab in enumerate(labels):
            assert float(scores[i, j]) == pytest.approx(_brute_force(model, tok, p, lab, "</s>"), abs=2e-4)


def test_loglik_and_generate_on_classification() -> None:
    model, tok = load_model("tiny-llama", device="cpu")
    task = load_task("trec")
    rows = task.eval_rows("validation", 12)
    ll = evaluate(model, tok, task, rows, max_seq_length=96)
    assert set(ll.metrics) == {"accuracy", "macro_f1"}
    assert len(ll.predictions) == 12 and set(ll.predictions) <= set(task.labels)
    gen = evaluate(model, tok, task, rows, max_seq_length=96, label_scoring="generate")
    assert len(gen.predictions) == 12 and 0.0 <= gen.metrics["accuracy"] <= 1.0
    with pytest.raises(ValueError, match="label scoring"):
        evaluate(model, tok, task, rows, label_scoring="vote")


def test_greedy_generation_is_batch_independent() -> None:
    """Left padding must not change what greedy decoding produces."""
    model, tok = load_model("tiny-mistral", device="cpu")
    task = load_task("squad")
    rows = task.eval_rows("validation", 6)
    together = evaluate(model, tok, task, rows, max_seq_length=128)
    alone = [evaluate(model, tok, task, [r], max_seq_length=128).predictions[0] for r in rows[:3]]
    assert together.predictions[:3] == alone
    assert set(together.metrics) == {"f1", "exact_match"}


def test_summarization_metrics() -> None:
    model, tok = load_model("tiny-llama", device="cpu")
    task = load_task("scitldr")
    out = evaluate(model, tok, task, task.eval_rows("validation", 4), max_seq_length=128)
    assert set(out.metrics) == {"rouge1", "rouge2", "rougeL"}
    assert all(0.0 <= v <= 1.0 for v in out.metrics.values())


@pytest.mark.parametrize("ref", ["tiny-llama", "tiny-mistral"])
def test_shared_prompt_prefix_is_computed_once_and_scores_stay_exact(ref: str, monkeypatch, forward_inputs) -> None:
    model, tok = load_model(ref, device="cpu")
    head = "Labels: no, yes, maybe not. Text: "
    prompts = [tok(head + t, add_special_tokens=False)["input_ids"] for t in ["abc", "a longer text here", "zz"]]
    assert shared_prefix_len(prompts) == len(head)
    shapes = forward_inputs(model)
    labels = ["no", "yes", "maybe not"]
    scores = label_logliks(model, tok, prompts, labels, suffix="</s>", device="cpu")
    calls = [width for _, width in shapes]
    assert calls[0] == len(head) and max(calls[1:]) < 20  # tails and labels only after the prefix
    monkeypatch.undo()
    for i, p in enumerate(prompts):
        for j, lab in enumerate(labels):
            assert float(scores[i, j]) == pytest.approx(_brute_force(model, tok, p, lab, "</s>"), abs=2e-4)


def test_no_shared_prefix_beyond_a_sliding_window(monkeypatch) -> None:
    """Beyond the tiny Mistral's 64-token window the prefix is not shared, and scores stay exact."""
    model, tok = load_model("tiny-mistral", device="cpu")
    head = "Classify the text into one of these labels: no, yes, maybe not. Text: "
    prompts = [tok(head + t, add_special_tokens=False)["input_ids"] for t in ["abc", "a longer text"]]
    calls: list[int] = []
    real = model.forward
    monkeypatch.setattr(model, "forward", lambda *a, **k: calls.append(k["input_ids"].shape[1]) or real(*a, **k))
    scores = label_logliks(model, tok, prompts, ["no", "yes"], suffix="</s>", device="cpu")
    monkeypatch.undo()
    assert calls[0] == max(len(p) for p in prompts)  # whole prompts in the first pass
    for i, p in enumerate(prompts):
        for j, lab in enumerate(["no", "yes"]):
            assert float(scores[i, j]) == pytest.approx(_brute_force(model, tok, p, lab, "</s>"), abs=2e-4)
