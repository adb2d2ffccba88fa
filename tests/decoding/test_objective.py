"""Statistics of the decoding objective, the noise-aware winner and the Pareto front, by hand."""

from __future__ import annotations

import math

import pytest

from staytuned.decoding.objective import Estimate, distinct_n, repetition_rate, t_quantile
from staytuned.decoding.tune import ConfigRow, choose_winner, pareto_front


def test_t_quantiles_match_tables():
    # Student-t two-sided 95 % critical values from any statistics table
    assert t_quantile(0.95, 1) == pytest.approx(12.706, abs=1e-3)
    assert t_quantile(0.95, 2) == pytest.approx(4.303, abs=1e-3)
    assert t_quantile(0.95, 9) == pytest.approx(2.262, abs=1e-3)
    assert t_quantile(0.90, 4) == pytest.approx(2.132, abs=1e-3)


def test_estimate_mean_and_interval_by_hand():
    est = Estimate.of([0.5, 0.7, 0.6])
    # mean 0.6, sample std 0.1, half-width 4.303 * 0.1 / sqrt(3) = 0.2484
    assert est.mean == pytest.approx(0.6) and est.std == pytest.approx(0.1)
    assert est.low == pytest.approx(0.6 - 0.24842, abs=1e-4)
    assert est.high == pytest.approx(0.6 + 0.24842, abs=1e-4)
    # 90 %: t = 2.920 -> half-width 0.1686
    assert Estimate.of([0.5, 0.7, 0.6], 0.90).high == pytest.approx(0.6 + 0.16859, abs=1e-4)
    one = Estimate.of([0.4])
    assert (one.low, one.high, one.n) == (0.4, 0.4, 1)
    assert Estimate.of([float("nan")]).n == 0


def test_distinct_n_and_repetition_rate_by_hand():
    # bigrams: (a b) (b a) (a b) | (c d) -> 3 distinct of 4
    assert distinct_n(["a b a b", "c d"], 2) == pytest.approx(3 / 4)
    assert math.isnan(distinct_n(["one"], 2))
    # "a b a b a b": bigrams ab ba ab ba ab -> 3 repeats of 5
    assert repetition_rate("a b a b a b", 2) == pytest.approx(3 / 5)
    assert repetition_rate("all different words here", 2) == 0.0


def _row(cid, scores, **sec):
    return ConfigRow(trial=0, config_id=cid, config={}, estimate=Estimate.of(scores),
                     secondary={"output_tokens": 1.0, "distinct_n": 0.5, "repetition_rate": 0.0, **sec},
                     sample_scores=list(scores))


def test_winner_is_the_best_lower_bound_not_the_best_mean():
    lucky = _row("lucky", [0.95, 0.45, 0.80])  # mean 0.733, very wide interval
    steady = _row("steady", [0.70, 0.71, 0.69])  # mean 0.70, narrow
    poor = _row("poor", [0.30, 0.31, 0.29])
    winner, ties = choose_winner([lucky, steady, poor], "max")
    assert winner is steady
    assert ties == ["lucky"]  # lucky's interval overlaps steady's: indistinguishable
    w_min, _ = choose_winner([lucky, steady, poor], "min")
    assert w_min is poor


def test_deterministic_greedy_beats_an_equally_good_noisy_config():
    greedy = _row("greedy", [0.70])
    noisy = _row("noisy", [0.68, 0.72, 0.70])
    assert choose_winner([noisy, greedy], "max")[0] is greedy


def test_pareto_front_by_hand():
    # (score max, tokens min): A dominates C; B trades score for length; D is dominated by B
    points = [[0.9, 30], [0.8, 10], [0.85, 40], [0.7, 12]]
    assert pareto_front(points, ["max", "min"]) == [0, 1]
    assert pareto_front([[0.5, float("nan")], [0.5, 3]], ["max", "min"]) == [1]
    assert pareto_front([[1, 1], [1, 1]], ["max", "max"]) == [0, 1]  # equal points both stay
