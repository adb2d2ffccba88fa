"""``--tol auto``: the tolerance chosen by leave-one-dataset-out, by hand and against evaluate."""

from __future__ import annotations

import numpy as np
import pytest

from staytuned.cbs import TOL_CANDIDATES, choose_tolerance, evaluate, parse_tol
from staytuned.errors import InputError
from staytuned.results import ScoreMatrix

# c1 is within 4% of the best everywhere; c2..c4 are each best on one dataset and poor elsewhere.
GENERALIST = [[0.96, 0.96, 0.96], [1.0, 0.5, 0.5], [0.5, 1.0, 0.5], [0.5, 0.5, 1.0]]


def test_a_wide_tolerance_wins_when_a_generalist_exists() -> None:
    """Tolerances below 4% let only the specialists cover: on a held-out dataset CBS tries the
    other two specialists first (normalized 0) and c1 third (0.92): mean (0 + 0 + .92) / 3.
    From 5% on c1 covers every training dataset and comes first: 0.92 at every k. 5% and 10%
    tie; the one nearer 1% wins."""
    choice = choose_tolerance(ScoreMatrix.from_dense(GENERALIST))
    assert choice.candidates == TOL_CANDIDATES
    assert choice.scores[:5] == pytest.approx([0.92 / 3] * 5)
    assert choice.scores[5:] == pytest.approx([0.92, 0.92])
    assert choice.tol == 0.05
    d = choice.to_dict()
    assert d["tol"] == 0.05 and len(d["candidates"]) == 7 and "k=1..3" in d["objective"]


def test_scores_are_evaluate_s_cbs_curves() -> None:
    rng = np.random.default_rng(4)
    m = ScoreMatrix.from_dense(rng.random((25, 6)).round(2))
    choice = choose_tolerance(m, candidates=(0.0, 0.03), k=2)
    for tol, score in zip(choice.candidates, choice.scores, strict=True):
        curve = evaluate(m, tol=tol, k=2).methods["cbs"].mean_best_of_k
        assert score == pytest.approx(sum(curve) / 2)


def test_ties_go_to_the_candidate_nearest_one_percent() -> None:
    m = ScoreMatrix.from_dense(np.full((3, 3), 0.5))  # every tolerance ranks the same
    assert choose_tolerance(m).tol == 0.01
    assert choose_tolerance(m, candidates=(0.0, 0.05)).tol == 0.0


def test_nested_evaluation_reports_the_tolerance_of_each_fold() -> None:
    m = ScoreMatrix.from_dense([*GENERALIST, [0.2, 0.2, 0.2]])
    ev = evaluate(m, tol="auto", k=3)
    assert ev.tol_per_fold is not None and set(ev.tol_per_fold) == {"d1", "d2", "d3"}
    assert ev.tol == 0.01  # "solved" keeps the default definition
    d = ev.to_dict()["settings"]
    assert d["tol"] == "auto" and d["solved_tol"] == 0.01 and d["tol_per_fold"] == ev.tol_per_fold


@pytest.mark.parametrize(("call", "field"), [
    (lambda: choose_tolerance(ScoreMatrix.from_dense([[1.0], [0.5]])), "tol"),
    (lambda: choose_tolerance(ScoreMatrix.from_dense(GENERALIST), candidates=(0.5, 2.0)), "tol"),
    (lambda: evaluate(ScoreMatrix.from_dense([[1.0, 0.2], [0.5, 0.3]]), tol="auto"), "tol"),
    (lambda: evaluate(ScoreMatrix.from_dense(GENERALIST), tol="auto", abs_tol=0.1), "tol"),
    (lambda: parse_tol("often"), "tol"),
    (lambda: parse_tol("-0.1"), "tol"),
])
def test_bad_input(call, field) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError) as exc:
        call()
    assert exc.value.field == field


def test_parse_tol() -> None:
    assert parse_tol("auto") == "auto" and parse_tol(" AUTO ") == "auto"
    assert parse_tol("0.02") == 0.02 and parse_tol("0") == 0.0
