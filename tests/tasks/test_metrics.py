"""Metrics against hand-computed values (and scikit-learn as a cross-check for macro-F1)."""

from __future__ import annotations

import random

import pytest

from staytuned.errors import InputError
from staytuned.tasks import PRIMARY_METRIC, Task
from staytuned.tasks.metrics import (
    METRICS,
    accuracy,
    compute_metrics,
    exact_match,
    macro_f1,
    normalize_answer,
    normalize_label,
    rouge_scores,
    squad_scores,
    token_f1,
)


def _task(kind: str, labels=()) -> Task:
    return Task(name="t", type=kind, splits={}, labels=list(labels))


@pytest.mark.parametrize(
    "text,labels,expected",
    [
        ("positive", ["negative", "positive"], "positive"),
        ("  Negative.\n", ["negative", "positive"], "negative"),
        ("Not hate", ["hate", "not-hate"], "not-hate"),  # '-' and '_' read as spaces
        ("hate speech, clearly", ["hate", "not-hate"], "hate"),  # starts with a label
        ("This is not-hate", ["hate", "not-hate"], "not-hate"),  # earliest occurrence
        ("I think it is negative", ["negative", "positive"], "negative"),
        ("positve", ["negative", "positive"], "positive"),  # typo: difflib ratio 0.93
        ("card arrival", ["card_arrival", "card_linking"], "card_arrival"),
        ("pos", ["negative", "positive"], None),  # ratio 0.55: too far
        ("", ["negative", "positive"], None),
        ("neutral", ["negative", "positive"], None),
    ],
)
def test_normalize_label(text: str, labels: list[str], expected: str | None) -> None:
    assert normalize_label(text, labels) == expected


def test_classification_metrics_hand_computed() -> None:
    task = _task("classification", ["negative", "positive"])
    preds = ["positive", "Negative.", "pos", "I think it's negative"]
    refs = ["positive", "negative", "positive", "positive"]
    m = compute_metrics(task, preds, refs)
    # normalized: positive, negative, None, negative -> 2 of 4 right
    assert m["accuracy"] == pytest.approx(0.5)
    # positive: tp 1, fp 0, fn 2 -> F1 2/4; negative: tp 1, fp 1, fn 0 -> F1 2/3
    assert m["macro_f1"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert set(m) == set(METRICS["classification"]) and PRIMARY_METRIC["classification"] in m


def test_accuracy_and_macro_f1_plain() -> None:
    assert accuracy(["a", "b", None], ["a", "a", "b"]) == pytest.approx(1 / 3)
    # a: tp1 fp0 fn1 -> 2/3; b: tp0 fp1 fn1 -> 0 ; macro = 1/3
    assert macro_f1(["a", "b", None], ["a", "a", "b"]) == pytest.approx(1 / 3)
    assert macro_f1(["a", "b"], ["a", "b"]) == 1.0


def test_macro_f1_matches_sklearn_when_all_predictions_are_labels() -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = random.Random(0)
    labels = ["a", "b", "c", "d"]
    refs = [rng.choice(labels) for _ in range(200)]
    preds = [r if rng.random() < 0.6 else rng.choice(labels) for r in refs]
    assert macro_f1(preds, refs) == pytest.approx(sklearn_metrics.f1_score(refs, preds, average="macro"))


def test_rouge_hand_computed() -> None:
    m = rouge_scores(["the cat sat on the mat"], ["the cat sat on a mat"])
    # unigrams: 5 of 6 overlap both ways; bigrams: 3 of 5; LCS "the cat sat on mat" = 5 of 6
    assert m["rouge1"] == pytest.approx(5 / 6)
    assert m["rouge2"] == pytest.approx(3 / 5)
    assert m["rougeL"] == pytest.approx(5 / 6)


def test_rouge_uses_stemming_and_averages() -> None:
    # Porter stemming: cats -> cat, running/runs -> run: a perfect unigram match
    m = rouge_scores(["cats running", "completely different"], ["cat runs", "cat runs"])
    assert m["rouge1"] == pytest.approx((1.0 + 0.0) / 2)
    assert m["rougeL"] == pytest.approx(0.5)
    assert rouge_scores([""], ["a summary"]) == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    task = _task("summarization")
    assert compute_metrics(task, ["the cat sat on the mat"], ["the cat sat on a mat"])["rougeL"] == pytest.approx(5 / 6)


def test_squad_normalization_and_scores() -> None:
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert exact_match("The Eiffel Tower!", "eiffel tower") == 1.0
    assert token_f1("in Paris France", "Paris") == pytest.approx(0.5)  # P 1/3, R 1
    assert token_f1("nothing", "Paris") == 0.0
    # max over gold answers: "red cat" F1 0.4; "big red dog house" P 1, R 3/4 -> 6/7
    assert squad_scores(["big red dog"], [["red cat", "big red dog house"]])["f1"] == pytest.approx(6 / 7)
    m = compute_metrics(_task("qa"), ["The Eiffel Tower!", "in Paris France"], [["eiffel tower", "Paris"], ["Paris"]])
    assert m == pytest.approx({"f1": 0.75, "exact_match": 0.5})


def test_length_mismatch_and_empty() -> None:
    with pytest.raises(InputError, match="differ in length"):
        compute_metrics(_task("classification", ["a", "b"]), ["a"], ["a", "b"])
    with pytest.raises(InputError, match="no gold answers"):
        squad_scores(["x"], [[]])
    nan = compute_metrics(_task("qa"), [], [])["f1"]
    assert nan != nan
