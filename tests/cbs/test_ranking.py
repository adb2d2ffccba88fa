"""CBS ranking on hand-computed tables, plus hypothesis properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from staytuned.cbs import covers, normalize, rank
from staytuned.errors import InputError
from staytuned.results import ScoreMatrix

NAN = math.nan


def _mixed() -> ScoreMatrix:
    # c3 failed on d1; c1 never ran on d3 (missing).
    scores = [
        [0.80, 0.50, NAN],
        [0.70, 0.90, 0.30],
        [NAN, 0.89, 0.60],
        [0.795, 0.10, 0.59],
    ]
    failed = [[False, False, False], [False, False, False], [True, False, False], [False, False, False]]
    return ScoreMatrix.from_dense(scores, failed=failed)


def test_missing_and_failed_hand_computed() -> None:
    m = _mixed()
    # covers at 1%: d1 >= 0.792 -> c1, c4; d2 >= 0.891 -> c2 (c3's 0.89 misses); d3 >= 0.594 -> c3.
    assert covers(m, 0.01).tolist() == [
        [True, False, False], [False, True, False], [False, False, True], [True, False, False]]
    norm = normalize(m)
    assert norm[2, 0] == 0.0  # failed = worst
    assert math.isnan(norm[0, 2])  # missing stays missing
    assert norm[3, 0] == pytest.approx(0.95)
    assert norm[2, 1] == pytest.approx(0.79 / 0.8)
    r = rank(m)
    # all gains 1 -> tie-break by mean normalized: c1 0.75 > c3 0.6625 > c4 0.639 > c2 0.333
    assert r.config_ids == ["c1", "c3", "c2", "c4"]
    assert [s.round for s in r.steps] == [1, 1, 1, 2]
    assert [s.new_datasets for s in r.steps] == [("d1",), ("d3",), ("d2",), ("d1",)]
    assert [s.covered for s in r.steps] == [1, 2, 3, 3]
    assert r.steps[0].mean_normalized == pytest.approx(0.75)
    # best-of-top-k over datasets that have a result among the top k: (1 + 0.5) / 2 after c1
    assert r.steps[0].mean_best_of_k == pytest.approx(0.75)
    assert r.steps[1].mean_best_of_k == pytest.approx((1 + 0.79 / 0.8 + 1) / 3)
    assert r.steps[2].mean_best_of_k == pytest.approx(1.0)


def test_lower_is_better() -> None:
    m = ScoreMatrix.from_dense([[1.0], [1.005], [2.0]], direction="min")
    assert covers(m, 0.01)[:, 0].tolist() == [True, True, False]
    assert normalize(m)[:, 0].tolist() == pytest.approx([1.0, 0.995, 0.0])
    r = rank(m)
    # one dataset: c1 covers it (round 1), then c2 in round 2, then c3 covers nothing in round 3
    assert r.config_ids == ["c1", "c2", "c3"]
    assert [s.round for s in r.steps] == [1, 2, 3]


def test_min_mirrors_max() -> None:
    rng = np.random.default_rng(3)
    a = rng.random((12, 5))
    up = rank(ScoreMatrix.from_dense(a, direction="max"), tol=0.05)
    down = rank(ScoreMatrix.from_dense(-a, direction="min"), tol=0.05)
    assert up.config_ids == down.config_ids


def test_ties_natural_order() -> None:
    ids = ["c10", "c2", "c1"]
    m = ScoreMatrix.from_dense([[0.5, 0.5]] * 3, config_ids=ids)
    assert rank(m).config_ids == ["c1", "c2", "c10"]


def test_tie_on_gain_goes_to_mean_normalized() -> None:
    # c1 and c2 each cover one dataset; c2 is better on the other (mean normalized 0.5 vs 0.25)
    m = ScoreMatrix.from_dense([[1.0, 0.0, 0.5], [0.0, 1.0, 0.0], [0.5, 0.5, 1.0]])
    # gains: c1 {d1}, c2 {d2}, c3 {d3}; means: c1 0.5, c2 0.333, c3 0.833
    assert rank(m).config_ids == ["c3", "c1", "c2"]


def test_one_dataset_and_one_config() -> None:
    r = rank(ScoreMatrix.from_dense([[0.5], [0.9], [0.895]]))
    assert r.config_ids == ["c2", "c3", "c1"]
    one = rank(ScoreMatrix.from_dense([[0.3, 0.5]]))
    assert one.config_ids == ["c1"] and one.steps[0].covered == 2 and one.steps[0].coverage == 1.0


def test_abs_tol_and_k() -> None:
    m = ScoreMatrix.from_dense([[0.90, 0.10], [0.85, 0.50], [0.10, 0.52]])
    # relative 1%: only c1 covers d1 (>= 0.891), only c3 covers d2 (>= 0.5148).
    # d1 norm: c1 1, c2 0.9375, c3 0; d2 norm: c1 0, c2 0.952, c3 1 -> means 0.5, 0.945, 0.5
    assert rank(m).config_ids == ["c1", "c3", "c2"]  # gains 1,0,1; tie c1/c3 at 0.5 -> natural order
    # absolute 0.06: c2 covers both datasets -> first
    r = rank(m, abs_tol=0.06, k=2)
    assert r.config_ids[0] == "c2" and len(r.steps) == 2 and r.steps[0].covered == 2


def test_all_equal_dataset_normalizes_to_one() -> None:
    norm = normalize(ScoreMatrix.from_dense(np.array([[0.0, 1.0], [0.0, 2.0]]), direction="max"))
    assert norm[:, 0].tolist() == [1.0, 1.0]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"tol": 1.5}, "tol"), ({"tol": -0.1}, "tol"), ({"tol": math.nan}, "tol"), ({"abs_tol": -1.0}, "abs_tol"),
     ({"k": 0}, "k")],
)
def test_bad_parameters(kwargs: dict, field: str) -> None:
    with pytest.raises(InputError) as exc:
        rank(ScoreMatrix.from_dense([[1.0]]), **kwargs)
    assert exc.value.field == field


def test_unknown_direction() -> None:
    with pytest.raises(InputError, match="direction"):
        ScoreMatrix.from_dense([[1.0]], direction="up")


# -- properties -------------------------------------------------------------------------------
cells = st.one_of(st.floats(0, 1, allow_nan=False), st.just(math.nan), st.sampled_from([0.0, 0.5, 1.0]))


@st.composite
def matrices(draw):  # type: ignore[no-untyped-def]
    n = draw(st.integers(1, 8))
    m = draw(st.integers(1, 6))
    scores = [[draw(cells) for _ in range(m)] for _ in range(n)]
    failed = [[draw(st.booleans()) and math.isnan(scores[i][j]) for j in range(m)] for i in range(n)]
    return ScoreMatrix.from_dense(scores, failed=failed, direction=draw(st.sampled_from(["max", "min"])))


@settings(max_examples=150, deadline=None)
@given(matrices(), st.sampled_from([0.0, 0.01, 0.2]))
def test_properties(m: ScoreMatrix, tol: float) -> None:
    r = rank(m, tol=tol)
    cov = covers(m, tol)
    # a permutation of the configs
    assert sorted(r.config_ids) == sorted(m.config_ids)
    # cumulative coverage monotone in k, and equal to the union of the top-k coverage
    covered = [s.covered for s in r.steps]
    assert covered == sorted(covered)
    for s in r.steps:
        top = [m.config_ids.index(c) for c in r.config_ids[: s.rank]]
        assert s.covered == int(cov[top].any(axis=0).sum())
    # the first pick covers at least as many datasets as any single config
    assert cov[m.config_ids.index(r.config_ids[0])].sum() == cov.sum(axis=1).max()


@settings(max_examples=150, deadline=None)
@given(matrices(), st.sampled_from([0.0, 0.01, 0.2]))
def test_matches_reference(ref, m: ScoreMatrix, tol: float) -> None:  # type: ignore[no-untyped-def]
    scores = {}
    for i, c in enumerate(m.config_ids):
        for j, d in enumerate(m.datasets):
            if m.failed[i, j]:
                scores[(c, d)] = None
            elif not math.isnan(m.scores[i, j]):
                scores[(c, d)] = float(m.scores[i, j])
    covers, _norm, mean = ref.tables(scores, list(m.config_ids), list(m.datasets), tol, m.directions[0])
    expected = ref.rank(covers, mean, list(m.config_ids), list(m.datasets))
    r = rank(m, tol=tol)
    assert [(s.config_id, s.round) for s in r.steps] == expected
