"""``transfer``: its rule on hand-made matrices, in ``tune`` (two processes on one study), in
``simulate`` and its CLI, its cost, and bench_simulate --quick."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from staytuned import cbs
from staytuned.cbs.portfolios import rank_by
from staytuned.errors import InputError
from staytuned.results import ScoreMatrix
from staytuned.search.records import read_records
from staytuned.search.simulate import simulate
from staytuned.search.strategies.transfer import TransferRule, TransferSettings, rank_utility
from staytuned.search.synthetic import family_matrix

from .conftest import SYNTH, demo_table, spawn

REPO = Path(__file__).resolve().parents[2]


def _norm(scores):
    return np.asarray(cbs.normalize(ScoreMatrix.from_dense(np.asarray(scores, float))))


def test_first_pick_is_the_zeroshot_portfolios_first_pick():
    m = family_matrix(12, 60, seed=3)
    rule = TransferRule(np.asarray(cbs.normalize(m)), utility=rank_utility(m))
    assert rule.next_config([], []) == rank_by(m, "zeroshot", k=1).order[0]
    # with normalized scores as the utility: the greedy score portfolio's (= best-average's)
    plain = TransferRule(np.asarray(cbs.normalize(m)))
    assert plain.next_config([], []) == rank_by(m, "greedy-portfolio", k=1).order[0]
    assert plain.next_config([], []) == rank_by(m, "best-average", k=1).order[0]


def test_a_copy_of_one_of_two_offline_datasets_is_solved_within_two_trials():
    # config 0 is A's best and the best on average; config 3 is B's best, the portfolio's second
    norm = _norm([[1.0, 0.6], [0.7, 0.0], [0.2, 0.3], [0.0, 1.0]])
    rule = TransferRule(norm)
    for copy in (0, 1):
        order = rule.order(norm[:, copy], 2)
        assert int(np.argmax(norm[:, copy])) in order


@pytest.mark.parametrize("seed", range(4))
def test_a_copy_of_an_offline_dataset_is_found_within_a_few_trials(seed):
    """Six unrelated offline datasets; the new task is one of them (affinely rescaled): after two
    distinct scores the copy explains them exactly, so its optimum comes within 4 trials."""
    rng = np.random.default_rng(seed)
    raw = rng.uniform(size=(40, 6))
    norm = _norm(raw)
    rule = TransferRule(norm)
    j = int(rng.integers(6))
    order = rule.order(3.0 + 10.0 * raw[:, j], 4)
    assert int(np.argmax(raw[:, j])) in order


def test_weights_move_toward_the_agreeing_datasets():
    norm = np.array([[1.0, 0.0, 0.9], [0.5, 0.5, 0.4], [0.0, 1.0, 0.1]])
    rule = TransferRule(norm)
    assert np.allclose(rule.weights([0], [0.7]), 1 / 3)  # one score ranks nothing
    w = rule.weights([0, 1, 2], [0.9, 0.6, 0.1])  # the new task agrees with datasets 0 and 2
    assert w[0] > w[1] and w[2] > w[1] and np.isclose(w.sum(), 1.0)


def test_running_and_failed_trials():
    norm = _norm([[0.8, 0.8], [1.0, 0.0], [0.2, 0.3], [0.0, 1.0]])
    rule = TransferRule(norm)
    # a running trial (NaN) counts as tried; a failed one (-inf) as the worst
    assert rule.next_config([0, 1], [0.5, float("nan")]) not in (0, 1)
    assert rule.next_config([0, 1, 2], [0.5, float("-inf"), 0.4]) == 3
    with pytest.raises(ValueError, match="no untried"):
        rule.next_config([0, 1, 2, 3], [0.1, 0.2, 0.3, 0.4])


def test_bad_settings_name_the_field():
    with pytest.raises(InputError, match="mix"):
        TransferSettings(mix=2.0)
    with pytest.raises(InputError, match="norm"):
        TransferRule(np.zeros(3))


def test_simulate_replays_transfer_beside_the_static_rankings():
    m = family_matrix(8, 40, seed=1)
    sim = simulate(m, strategies=["transfer", "cbs"], rankers=("cbs", "zeroshot"), k=5, seeds=2,
                   holdouts=[0, 3])
    got = {c.strategy: c for c in sim.strategies}
    assert set(got) == {"transfer", "cbs", "static:cbs", "static:zeroshot"}
    assert got["cbs"].mean_best_of_k == got["static:cbs"].mean_best_of_k
    assert set(got["transfer"].per_dataset) == {m.datasets[0], m.datasets[3]}
    b = got["transfer"].mean_best_of_k
    assert all(y >= x for x, y in itertools.pairwise(b)) and 0 < b[0] <= b[-1] <= 1


def test_transfer_cost_is_a_few_normalizations_of_the_table():
    """The cost guard is a ratio, never a wall-clock limit: a proposal on a 1,000 x 200 table
    costs at most 20 x ``cbs.normalize`` of that table (measured 4-5 x, also at 2,000 x 500;
    ``bench_simulate.py --cost`` gives seconds). Minimum of repeats on both sides: other
    processes share the cores."""
    m = family_matrix(200, 1000, seed=0)
    norm = np.asarray(cbs.normalize(m))
    rule = TransferRule(norm)
    look = norm[:, 0]
    tried: list[int] = []
    obs: list[float] = []
    worst = 0.0
    for _ in range(6):  # portfolio phase, then calibrated expected improvement
        best = np.inf
        for _ in range(3):
            t0 = time.perf_counter()
            c = rule.next_config(tried, obs)
            best = min(best, time.perf_counter() - t0)
        worst = max(worst, best)
        tried.append(c)
        obs.append(float(look[c]))
    ref = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        cbs.normalize(m)
        ref = min(ref, time.perf_counter() - t0)
    assert worst <= 20 * ref, (worst, ref)


def test_simulate_cli_accepts_transfer(run_cli, tmp_path):
    demo_table(tmp_path / "t.csv", n_datasets=4)
    res = run_cli("simulate", "t.csv", "--strategies", "cbs,transfer", "--k", "3", "--seeds", "1",
                  "--json", "sim.json", "-q")
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "sim.json").read_text())
    assert {"cbs", "transfer", "static:zeroshot"} <= set(data["strategies"])
    res = run_cli("simulate", "t.csv", "--strategies", "cbs", "--rankers", "magic", "-q")
    assert res.exit_code == 2 and "--rankers" in res.output and "zeroshot" in res.output


@pytest.mark.slow
def test_two_processes_on_one_sqlite_study_never_share_a_config(tmp_path):
    table = demo_table(tmp_path / "offline.csv")
    url = f"sqlite:///{tmp_path}/study.db"
    procs = [spawn(["tune", "--task", "t1", "--model", "m", "--space", "preset:demo", "--strategy",
                    "transfer", "--cbs-table", str(table), "--trials", "6", "--trial-fn", SYNTH,
                    "--storage", url, "--study", "s", "--train-size", "10", "-q"],
                   tmp_path, {"STAYTUNED_SYNTHETIC_SLEEP": "0.3"}) for _ in range(2)]
    for p in procs:
        _, stderr = p.communicate(timeout=600)  # a hang guard only
        assert p.returncode == 0, stderr
    records = read_records(url, "s")
    ids = Counter(r.config_id for r in records)
    assert len(records) == 6 and max(ids.values()) == 1, [r.config for r in records]
    assert all(r.status == "ok" for r in records)


def test_bench_simulate_quick(tmp_path):
    out = tmp_path / "sim.json"
    md = tmp_path / "sim.md"
    subprocess.run([sys.executable, str(REPO / "bench" / "bench_simulate.py"), "--quick",
                    "--out", str(out), "--markdown", str(md)], check=True, capture_output=True,
                   text=True, timeout=600)
    report = json.loads(out.read_text())
    assert report["transfer_cost"]["per_proposal_s"]["median"] > 0
    for entry in report["tables"].values():
        assert {"transfer", "tpe", "static:cbs", "static:zeroshot", "static:greedy-portfolio",
                "static:best-average"} <= set(entry["strategies"])
        assert set(entry["must_show"]["gap_to_best_static"]) == {"k=2", "k=3", "k=4", "k=5"}
    assert "| **transfer** |" in md.read_text()
