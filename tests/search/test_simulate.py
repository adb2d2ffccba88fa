"""simulate: leave-one-dataset-out replay; cbs-adaptive's rules on hand-made matrices."""

from __future__ import annotations

import numpy as np
import pytest

from staytuned import cbs
from staytuned.results import ScoreMatrix, from_records
from staytuned.search.simulate import simulate
from staytuned.search.strategies.adaptive import dataset_weights, next_config
from staytuned.search.synthetic import clustered_table


def _matrix(scores, hps=None):
    return ScoreMatrix.from_dense(np.array(scores, float), hps=hps)


def test_weights_uniform_until_two_observations():
    norm = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert dataset_weights(norm, [0], [0.5]).tolist() == [1.0, 1.0]


def test_weights_favour_the_agreeing_dataset():
    # configs 0,1 observed: 0 better than 1 -> dataset 0 agrees (tau 1, same best), dataset 1 not
    norm = np.array([[1.0, 0.0], [0.5, 1.0], [0.2, 0.3]])
    w = dataset_weights(norm, [0, 1], [0.9, 0.4])
    assert w[0] > w[1]
    # tau: +1 vs -1, bonus 0.5 vs 0 -> ratio exp(4 * 2.5)
    assert np.isclose(w[0] / w[1], np.exp(4.0 * 2.5))


def test_first_pick_is_static_cbs_first_pick():
    m = from_records(clustered_table(3, 3, seed=1)).score_matrix()
    first = cbs.rank(m, k=1).order[0]
    assert next_config(np.asarray(cbs.normalize(m)), [], [], covers=np.asarray(cbs.covers(m, 0.01))) == first


def test_next_config_moves_to_the_agreeing_cluster():
    # datasets 0,1 (cluster A) best at config 2; datasets 2,3 (cluster B) best at config 3;
    # config 0 is good for A, config 1 for B.
    norm = np.array([
        [0.9, 0.9, 0.0, 0.0],
        [0.0, 0.0, 0.9, 0.9],
        [1.0, 1.0, 0.1, 0.1],
        [0.1, 0.1, 1.0, 1.0],
    ])
    # new task behaves like A: config 0 scored better than config 1
    assert next_config(norm, [0, 1], [0.8, 0.2]) == 2
    assert next_config(norm, [0, 1], [0.2, 0.8]) == 3


def test_simulate_cbs_matches_cbs_evaluate():
    m = from_records(clustered_table(3, 4, seed=2)).score_matrix()
    sim = simulate(m, strategies=["cbs"], k=5, seeds=1)
    ev = cbs.evaluate(m, k=5)
    assert np.allclose(sim.strategies[0].mean_best_of_k, ev.methods["cbs"].mean_best_of_k)
    assert np.allclose(sim.strategies[0].solved_fraction, ev.methods["cbs"].solved_fraction)


def test_simulate_hand_computed_grid_order():
    # 3 configs x 2 datasets, normalized per dataset by (s - min) / (max - min)
    m = _matrix([[0.5, 0.9], [1.0, 0.1], [0.0, 0.5]],
                hps=[{"lr": 1.0}, {"lr": 2.0}, {"lr": 3.0}])
    sim = simulate(m, strategies=["grid"], k=3, seeds=1)
    g = sim.strategies[0]
    # d1: grid order c1, c2, c3 -> normalized 0.5, 1.0, 0 -> best-of-k 0.5, 1, 1
    # d2: 1.0 at once
    assert g.mean_best_of_k == pytest.approx([0.75, 1.0, 1.0])
    assert g.solved_fraction == pytest.approx([0.5, 1.0, 1.0])


@pytest.mark.parametrize("strategy", ["random", "tpe", "gp", "cbs+tpe", "cbs-adaptive"])
def test_every_strategy_distinct_configs_and_monotone(strategy):
    m = from_records(clustered_table(2, 3, seed=3)).score_matrix()
    sim = simulate(m, strategies=[strategy], k=5, seeds=1 if strategy == "gp" else 2)
    c = sim.strategies[0]
    assert all(b >= a - 1e-12 for a, b in zip(c.mean_best_of_k, c.mean_best_of_k[1:], strict=False))
    assert 0 < c.mean_best_of_k[0] <= c.mean_best_of_k[-1] <= 1.0
    assert c.solved_fraction[-1] <= 1.0


def test_adaptive_beats_static_cbs_on_clustered_tables():
    """The structure cbs-adaptive is built for: mean over 3 tables, k = 2..5."""
    gains = []
    for seed in range(3):
        m = from_records(clustered_table(4, 5, seed=seed)).score_matrix()
        sim = simulate(m, strategies=["cbs", "cbs-adaptive"], k=5, seeds=1)
        c, a = sim.strategies
        gains.append(np.mean(a.mean_best_of_k[1:5]) - np.mean(c.mean_best_of_k[1:5]))
    assert np.mean(gains) > 0
