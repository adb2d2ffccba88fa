"""Leave-one-out evaluation and baselines, against hand computations and brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from staytuned.cbs import evaluate
from staytuned.cbs.evaluation import _random_exact
from staytuned.errors import InputError
from staytuned.results import ScoreMatrix

HAND = [[1.0, 0.5, 0.2], [0.99, 0.9, 0.1], [0.1, 0.2, 1.0]]


def test_leave_one_dataset_out_by_hand() -> None:
    ev = evaluate(ScoreMatrix.from_dense(HAND), k=3)
    # held out d1: order c2,c3,c1 -> normalized on d1 0.9889, 0, 1
    # held out d2: order c1,c3,c2 -> 0.4286, 0, 1 ; held out d3: order c2,c1,c3 -> 0, 0.1111, 1
    d1, d2, d3 = 0.89 / 0.9, 0.3 / 0.7, 0.1 / 0.9
    cbs = ev.methods["cbs"]
    assert cbs.mean_best_of_k == pytest.approx([(d1 + d2) / 3, (d1 + d2 + d3) / 3, 1.0])
    assert cbs.solved_fraction == pytest.approx([1 / 3, 1 / 3, 1.0])
    assert ev.per_dataset["cbs"][0].tolist() == pytest.approx([d1, d1, 1.0])
    rnd = ev.methods["random"]
    assert rnd.mean_best_of_k[0] == pytest.approx(((1 + d1) / 3 + (d2 + 1) / 3 + (d3 + 1) / 3) / 3)
    assert rnd.mean_best_of_k[2] == pytest.approx(1.0)
    assert ev.methods["oracle"].mean_best_of_k == [1.0, 1.0, 1.0]
    assert set(ev.methods) == {"cbs", "zeroshot", "greedy-portfolio", "best-average", "random", "oracle"}
    # By hand, both portfolios pick CBS's order in every fold here (e.g. held out d3: ranks
    # c2 > c1 > c3 on d1 and d2 tie c1, c2 at 1.5; mean normalized breaks it for c2; then c1).
    for name in ("zeroshot", "greedy-portfolio"):
        assert ev.methods[name].mean_best_of_k == pytest.approx(cbs.mean_best_of_k)
    only = evaluate(ScoreMatrix.from_dense(HAND), k=3, methods=["cbs", "oracle"])
    assert set(only.methods) == {"cbs", "oracle"} and only.methods["cbs"] == cbs
    d = ev.to_dict()
    assert d["k"] == [1, 2, 3] and set(d["methods"]["cbs"]) >= {"mean_best_of_k", "solved_fraction"}


def test_random_exact_matches_all_permutations() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 2, 4, 6):
        vals = rng.random(n).round(2)
        solved = rng.random(n) < 0.4
        K = 7
        ev, ps = _random_exact(vals, solved, K)
        perms = list(itertools.permutations(range(n)))
        for k in range(1, K + 1):
            kk = min(k, n)
            want = sum(max(vals[list(p[:kk])]) for p in perms) / len(perms)
            want_s = sum(any(solved[list(p[:kk])]) for p in perms) / len(perms)
            assert ev[k - 1] == pytest.approx(want)
            assert ps[k - 1] == pytest.approx(want_s)


def test_random_permutations_close_to_exact() -> None:
    rng = np.random.default_rng(1)
    m = ScoreMatrix.from_dense(rng.random((30, 6)))
    exact = evaluate(m, k=5).methods["random"].mean_best_of_k
    approx = evaluate(m, k=5, random_perms=3000, seed=2).methods["random"].mean_best_of_k
    assert approx == pytest.approx(exact, abs=0.02)


def test_default_config_and_groups() -> None:
    hps = [{"learning_rate": 1e-4, "epochs": 3}, {"learning_rate": 1e-5, "epochs": 3},
           {"learning_rate": 1e-4, "epochs": 1}]
    m = ScoreMatrix.from_dense(HAND, hps=hps)
    ev = evaluate(m, k=2, default_config="lr=1e-5,epochs=3")
    assert ev.default_config == "c2"
    # c2 on d1, d2, d3 normalized: 0.9889, 1, 0 ; solved: d1 yes, d2 yes, d3 no
    assert ev.methods["default"].mean_best_of_k == pytest.approx([(0.89 / 0.9 + 1) / 3] * 2)
    assert ev.methods["default"].solved_fraction == pytest.approx([2 / 3, 2 / 3])
    with pytest.raises(InputError, match="match"):
        evaluate(m, default_config="lr=1e-4")  # two configs match
    # groups {d1, d2} and {d3}: holding out g1 ranks on d3 only -> c3 first (covers d3)
    ev = evaluate(m, k=1, groups={"d1": "g1", "d2": "g1", "d3": "g2"})
    assert ev.scheme == "leave-one-group-out"
    assert ev.per_dataset["cbs"][:, 0].tolist() == pytest.approx([0.0, 0.0, 0.0])
    with pytest.raises(InputError, match="two groups"):
        evaluate(m, groups={"d1": "g", "d2": "g", "d3": "g"})


def test_choose_and_score_differ() -> None:
    choose = ScoreMatrix.from_dense([[1.0, 1.0], [0.0, 0.0]])
    score = ScoreMatrix.from_dense([[0.0, 0.0], [1.0, 1.0]])
    ev = evaluate(choose, score, k=1)
    assert ev.methods["cbs"].mean_best_of_k == [0.0]  # chose c1 on dev, which is worst on test
    assert ev.methods["oracle"].mean_best_of_k == [1.0]
    assert ev.paired


def test_missing_cells_are_skipped_on_held_out() -> None:
    # c1 would be first everywhere but never ran on d3: there the next config with a result counts
    m = ScoreMatrix.from_dense([[1.0, 1.0, math.nan], [0.5, 0.5, 0.2], [0.0, 0.0, 1.0]])
    ev = evaluate(m, k=1)
    assert ev.per_dataset["cbs"][2, 0] == pytest.approx(0.0)  # c2 is worst of (c2, c3) on d3


def test_bad_evaluate_input() -> None:
    with pytest.raises(InputError, match="two datasets"):
        evaluate(ScoreMatrix.from_dense([[1.0], [0.5]]))
    with pytest.raises(InputError, match="same configs"):
        evaluate(ScoreMatrix.from_dense(HAND), ScoreMatrix.from_dense([[1.0, 2.0]]))
    with pytest.raises(InputError):
        evaluate(ScoreMatrix.from_dense(HAND), tol=1.0)
