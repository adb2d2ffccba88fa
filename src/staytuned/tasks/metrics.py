"""Task metrics, computed locally (no ``evaluate.load``, no network). All scores are in [0, 1].

- classification: ``accuracy`` (primary) and ``macro_f1``. Generated text is first mapped to a
  label by :func:`normalize_label`; text that matches no label counts as wrong.
- summarization: ``rouge1``, ``rouge2``, ``rougeL`` (primary): F-measures from the
  ``rouge-score`` package with Porter stemming, averaged over examples. ``rougeL`` is the
  sentence-level longest-common-subsequence score.
- qa: ``f1`` (primary) and ``exact_match``: the SQuAD v1.1 evaluation (answers normalized:
  lowercase, punctuation and the articles a/an/the removed, whitespace collapsed; token F1;
  maximum over the gold answers).
"""

from __future__ import annotations

import difflib
import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from staytuned.errors import InputError

if TYPE_CHECKING:
    from staytuned.tasks.task import Task

METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "macro_f1"),
    "summarization": ("rouge1", "rouge2", "rougeL"),
    "qa": ("f1", "exact_match"),
}

# ---------------------------------------------------------------------------- classification


def _label_key(text: str) -> str:
    # "card_arrival", "Card arrival" and "card-arrival" all compare equal.
    return " ".join(re.sub(r"[_\-]+", " ", text.strip().lower()).split())


def normalize_label(prediction: str, labels: Sequence[str]) -> str | None:
    """Map generated text to one of ``labels``, or None when nothing matches.

    Rules, first that applies: the stripped, lowercased text (``_``/``-`` read as spaces,
    surrounding punctuation dropped) equals a label; the text starts with a label (the longest
    such label, so ``not-hate`` beats ``not``); a label occurs in the text as a whole word (the
    earliest, longest on ties); the closest label by ``difflib`` similarity >= 0.8 (typos).
    """
    if not labels:
        return None
    keys = {_label_key(lab): lab for lab in labels}
    text = _label_key(prediction).strip(string.punctuation + " ")
    if not text:
        return None
    if text in keys:
        return keys[text]
    starts = [k for k in keys if re.match(re.escape(k) + r"(\b|$)", text)]
    if starts:
        return keys[max(starts, key=len)]
    hits = []
    for k in keys:
        m = re.search(r"(?<!\w)" + re.escape(k) + r"(?!\w)", text)
        if m:
            hits.append((m.start(), -len(k), k))
    if hits:
        return keys[min(hits)[2]]
    close = difflib.get_close_matches(text, list(keys), n=1, cutoff=0.8)
    return keys[close[0]] if close else None


def accuracy(predictions: Sequence[str | None], references: Sequence[str]) -> float:
    """Fraction of exact matches (predictions already normalized; None is wrong)."""
    _same_length(predictions, references)
    if not references:
        return float("nan")
    return sum(p == r for p, r in zip(predictions, references, strict=True)) / len(references)


def macro_f1(predictions: Sequence[str | None], references: Sequence[str]) -> float:
    """Unweighted mean of per-label F1 over the labels that occur in references or predictions.

    A None prediction (no label matched) is a miss for its reference label and is not a label of
    its own. Equals ``sklearn.metrics.f1_score(average="macro")`` when every prediction is a label.
    """
    _same_length(predictions, references)
    if not references:
        return float("nan")
    label_set = sorted({*references, *(p for p in predictions if p is not None)})
    f1s = []
    for lab in label_set:
        tp = sum(p == lab and r == lab for p, r in zip(predictions, references, strict=True))
        fp = sum(p == lab and r != lab for p, r in zip(predictions, references, strict=True))
        fn = sum(p != lab and r == lab for p, r in zip(predictions, references, strict=True))
        denom = 2 * tp + fp + fn
        f1s.append(2 * tp / denom if denom else 0.0)
    return sum(f1s) / len(f1s)


# ---------------------------------------------------------------------------- summarization


def rouge_scores(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measures with Porter stemming (``rouge-score`` package)."""
    _same_length(predictions, references)
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        from staytuned.errors import DependencyError

        raise DependencyError("rouge-score", "train", "ROUGE for summarization") from None
    names = METRICS["summarization"]
    if not references:
        return dict.fromkeys(names, float("nan"))
    scorer = rouge_scorer.RougeScorer(list(names), use_stemmer=True)
    totals = dict.fromkeys(names, 0.0)
    for pred, ref in zip(predictions, references, strict=True):
        scores = scorer.score(ref, pred or "")
        for n in names:
            totals[n] += scores[n].fmeasure
    return {n: totals[n] / len(references) for n in names}


# ---------------------------------------------------------------------------- qa (SQuAD v1.1)


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalization: lowercase, drop punctuation and articles, collapse spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def token_f1(prediction: str, gold: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def squad_scores(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean over questions of the best F1 / exact match against any gold answer."""
    _same_length(predictions, references)
    if not references:
        return {"f1": float("nan"), "exact_match": float("nan")}
    f1 = em = 0.0
    for pred, golds in zip(predictions, references, strict=True):
        golds = [golds] if isinstance(golds, str) else list(golds)
        if not golds:
            raise InputError("a QA reference has no gold answers", field="references", expected="at least one answer")
        f1 += max(token_f1(pred or "", g) for g in golds)
        em += max(exact_match(pred or "", g) for g in golds)
    return {"f1": f1 / len(references), "exact_match": em / len(references)}


# ---------------------------------------------------------------------------- dispatch


def _same_length(predictions: Sequence[Any], references: Sequence[Any]) -> None:
    if len(predictions) != len(references):
        raise InputError(
            "predictions and references differ in length",
            field="predictions",
            value=len(predictions),
            expected=f"{len(references)} predictions, one per reference",
        )


def compute_metrics(task: Task, predictions: Sequence[str], references: Sequence[Any]) -> dict[str, float]:
    """All metrics of ``task.type`` (names in :data:`METRICS`); ``task.metric`` is the primary.

    ``predictions`` are generated texts (or label names from label scoring); ``references`` are
    gold values as given by ``task.references(rows)``: label names, summaries, or answer lists.
    """
    if task.type == "classification":
        normalized = [normalize_label(p or "", task.labels) for p in predictions]
        return {"accuracy": accuracy(normalized, references), "macro_f1": macro_f1(normalized, references)}
    if task.type == "summarization":
        return rouge_scores(predictions, references)
    if task.type == "qa":
        return squad_scores(predictions, references)
    raise InputError("unknown task type", field="type", value=task.type, expected=", ".join(METRICS))
