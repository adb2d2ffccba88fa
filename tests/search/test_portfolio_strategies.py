"""``zeroshot`` and ``greedy-portfolio``: the portfolio enqueued in order, on the synthetic objective."""

from __future__ import annotations

import optuna
import pytest

from staytuned.cbs import rank_by
from staytuned.results import load_results
from staytuned.search.runner import prepare_spec, tune
from staytuned.search.strategies import STRATEGIES, build_strategy, strategy_class
from staytuned.search.strategies.portfolio import GreedyPortfolio, ZeroShot

from .conftest import demo_table
from .test_strategies import _spec

KEYS = ("learning_rate", "lr_scheduler", "lora_r")


@pytest.mark.parametrize("strategy", ["zeroshot", "greedy-portfolio"])
def test_tune_enqueues_the_portfolio_in_order(tmp_path, strategy):
    table = demo_table(tmp_path / "offline.csv")
    spec = prepare_spec(_spec(tmp_path, strategy, n=6), cbs_table=str(table))
    outcome = tune(spec)
    assert outcome.counts.complete == 6
    want = [{k: s.hps[k] for k in KEYS}
            for s in rank_by(load_results(table).score_matrix(), strategy, k=6).steps]
    study = optuna.load_study(study_name=spec.study_name, storage=spec.storage)
    trials = sorted(study.trials, key=lambda t: t.number)
    got = [t.params for t in trials]
    assert got == want
    assert all("fixed_params" in t.system_attrs for t in trials)  # enqueued, not sampled
    assert len({tuple(sorted(p.items())) for p in got}) == 6  # no config twice


def _split_table(path):
    """Demo-space lora grid on 3 datasets: config 0 is good everywhere (0.7), config 1 best on
    d0/d1, config 2 best on d2, the rest poor: CBS covers with 1 and 2, greedy-portfolio starts
    with 0 (highest mean normalized score)."""
    import csv

    from staytuned.search.space import config_id, load_space

    grid = load_space("preset:demo").grid({"method": "lora"})
    table = {0: (0.7, 0.7, 0.7), 1: (1.0, 1.0, 0.0), 2: (0.0, 0.0, 1.0)}
    rows = [{"dataset": f"d{d}", "config_id": config_id(cfg), "model": "m", "method": "lora",
             **{f"hp_{k}": v for k, v in cfg.items()},
             "score": table.get(i, (0.05 * i,) * 3)[d]}
            for d in range(3) for i, cfg in enumerate(grid)]
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path, grid


def test_the_queue_follows_the_strategy_s_own_ranker(tmp_path):
    """The offline source holds CBS's ranking (``offline_from_table``); the portfolio strategies
    re-rank its per-dataset scores with their own ranker."""
    table, grid = _split_table(tmp_path / "offline.csv")
    spec = prepare_spec(_spec(tmp_path, "greedy-portfolio", n=3), cbs_table=str(table))
    first = [{k: grid[i][k] for k in KEYS} for i in (0, 1, 2)]
    queue = build_strategy("greedy-portfolio", space=spec.load_space(), n_trials=3, context=spec.context,
                           offline=spec.offline).initial_queue()
    assert queue == first  # 0 first (best mean), then 1 and 2 complete the portfolio
    cbs_queue = build_strategy("cbs", space=spec.load_space(), n_trials=3, context=spec.context,
                               offline=spec.offline).initial_queue()
    assert cbs_queue[:2] == [first[1], first[2]]  # CBS: the two covering configs first


def test_registered_and_declared():
    assert {"zeroshot", "greedy-portfolio"} <= set(STRATEGIES)
    assert strategy_class("zeroshot") is ZeroShot and ZeroShot.ranker == "zeroshot"
    assert strategy_class("greedy-portfolio") is GreedyPortfolio and GreedyPortfolio.ranker == "greedy-portfolio"
    assert ZeroShot.needs == "ranking"  # a table or the shipped recommendations


def test_shipped_recommendations_without_a_table(tmp_path):
    spec = prepare_spec(_spec(tmp_path, "zeroshot", n=2, method="lora"))
    assert spec.offline is not None and spec.offline.matrix is None
    assert tune(spec).counts.complete == 2


def test_cli_help_lists_every_strategy():
    from staytuned.cli.search import STRATEGY_HELP

    assert set(STRATEGY_HELP.split(" | ")) == set(STRATEGIES)
