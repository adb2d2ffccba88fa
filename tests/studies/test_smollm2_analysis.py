"""Numbers of the SmolLM2 study's analysis (studies/smollm2/analyze.py) on hand-made matrices."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pytest

from staytuned.results import ScoreMatrix

SCRIPT = Path(__file__).resolve().parents[2] / "studies" / "smollm2" / "analyze.py"


@pytest.fixture(scope="module")
def analyze():
    spec = importlib.util.spec_from_file_location("smollm2_analyze", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_random_baseline_is_the_exact_expectation(analyze):
    values = np.array([0.1, 0.7, 0.3, 0.9, 0.5, 0.2])
    for k in range(1, 6):
        brute = np.mean([max(c) for c in itertools.combinations(values, k)])
        assert analyze.expected_best_of_random(values, k) == pytest.approx(brute)


def test_loo_points_holds_out_and_counts_failures_as_worst(analyze):
    # c1 is best on d1/d2, c2 on d3; c3 failed on d3; the baseline failed on d1.
    mx = ScoreMatrix.from_dense(
        [[0.9, 0.8, 0.1], [0.5, 0.4, 0.9], [0.2, 0.1, np.nan]],
        datasets=["d1", "d2", "d3"], failed=[[0, 0, 0], [0, 0, 0], [0, 0, 1]])
    gaps = analyze.loo_points(mx, {"default": {"d1": np.nan, "d2": 50.0, "d3": 30.0}})
    from staytuned.cbs import rank

    expect = []
    for j, d in enumerate(mx.datasets):  # the ranking never sees the held-out dataset
        order = rank(mx.subset(datasets=[x for x in mx.datasets if x != d])).config_ids
        col = np.where(mx.failed[:, j], np.nanmin(mx.scores[:, j]), mx.scores[:, j]) * 100
        expect.append(col.max() - col[mx.config_ids.index(order[0])])
    assert gaps["CBS"][0] == pytest.approx(np.mean(expect))
    assert gaps["CBS"][2] == pytest.approx(0)  # the top 3 of 3 configs hold every best
    # the failed default counts as d1's worst grid score (20): gaps 70, 30, 60
    assert gaps["default"] == pytest.approx([(70 + 30 + 60) / 3] * analyze.K)
    # random, k=1: the mean of the column, with c3's failure on d3 at d3's worst (10)
    assert gaps["random"][0] == pytest.approx(((90 - 160 / 3) + (80 - 130 / 3) + (90 - 110 / 3)) / 3)


def test_spearman_gives_ties_their_average_rank(analyze):
    a = np.array([0.5, 0.5, 0.5, 0.6])
    assert analyze._spearman(a, np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(
        analyze._spearman(a[::-1], np.array([4.0, 3.0, 2.0, 1.0])))
    assert np.isnan(analyze._spearman(np.array([1.0, 1.0, 1.0]), np.array([1.0, 2.0, 3.0])))


def test_cells_still_running_are_left_out_until_whole(analyze):
    ids = {"full": {"a", "b"}, "lora": {"x"}}

    def row(method, dataset, cid, size="100"):
        return {"method": method, "dataset": dataset, "config_id": cid, "train_size": size}

    rows = [row("full", "sst2", "a"), row("full", "sst2", "b"),  # whole
            row("full", "squad", "a"),  # 1 of 2 configs so far
            row("lora", "squad", "x"),  # whole (the other method's cell)
            row("full", "trec", "a", size="1000")]  # size 1000 runs picks, never a whole grid
    kept, notes = analyze.drop_incomplete_cells(rows, ids)
    assert kept == [rows[0], rows[1], rows[3], rows[4]]
    assert notes == ["squad (full: 1 of 2 configs)"]


def test_loo_picks_rank_without_the_held_out_dataset(analyze):
    # Without d4, CBS takes c1 (within 1% of the best on d1 and d2) and best-average takes c2
    # (good everywhere); with d4 counted, c2 would cover two datasets too and win CBS's tie-break.
    hp = {"learning_rate": 1e-4, "lr_scheduler": "linear", "batch_size": 8, "epochs": 3.0}
    mx = ScoreMatrix.from_dense(
        [[0.9, 0.9, 0.1, 0.2], [0.85, 0.85, 0.8, 0.7], [0.5, 0.5, 0.5, 0.4]],
        datasets=["d1", "d2", "d3", "d4"],
        hps=[hp, {**hp, "lr_scheduler": "cosine"}, {**hp, "learning_rate": 1e-5}])
    rows = {r[0]: r[1:] for r in analyze.loo_picks(mx)}
    assert set(rows) == {"d1", "d2", "d3", "d4"}
    assert rows["d4"] == ["70.0: lr 1e-4, cosine, batch 8, 3 ep", "20.0: lr 1e-4, linear, batch 8, 3 ep",
                          "70.0: lr 1e-4, cosine, batch 8, 3 ep", "lr_scheduler"]


def test_paired_steps_compare_configs_that_differ_in_one_hp_only(analyze):
    # lr x scheduler, full factorial, 2 datasets; c5 (lr 1e-3, cosine) has no linear twin.
    hps = [{"learning_rate": lr, "lr_scheduler": s} for lr, s in
           [(1e-4, "linear"), (1e-4, "cosine"), (1e-3, "linear"), (3e-4, "cosine"), (1e-3, "cosine")]]
    mx = ScoreMatrix.from_dense(
        [[0.5, 0.6], [0.4, np.nan], [0.7, 0.9], [0.45, 0.5], [0.6, 0.55]], datasets=["d1", "d2"], hps=hps)
    steps = {(lo, hi): d.tolist() for lo, hi, d in analyze.paired_steps(mx, ["lr_scheduler"])}
    # cosine -> linear at lr 1e-4 (d2 not run by the cosine config) and at 1e-3
    assert steps == {("cosine", "linear"): pytest.approx([10.0, 10.0, 35.0])}
    steps = {(lo, hi): d.tolist() for lo, hi, d in analyze.paired_steps(mx, ["learning_rate"])}
    # adjacent levels only; linear has no 3e-4 config, so its 1e-4 -> 1e-3 pair is not a step
    assert steps == {("1e-4", "3e-4"): pytest.approx([5.0]), ("3e-4", "1e-3"): pytest.approx([15.0, 5.0])}


def test_size_rows_compare_the_picks_at_both_sizes(analyze):
    # c1 is the top 1, c2 the median; c3 is the best at 100 on sst2 but never re-run at 1000.
    mx100 = ScoreMatrix.from_dense([[0.80, 0.30], [0.70, 0.20], [0.85, 0.35]], datasets=["sst2", "squad"])
    c1, c2, _c3 = mx100.config_ids
    mx1000 = ScoreMatrix.from_dense([[0.82], [0.90]], datasets=["sst2"], config_ids=[c1, c2])
    mx1000_gen = ScoreMatrix.from_dense([[0.40]], datasets=["squad"], config_ids=[c1])
    picks = {"classification": [c1, c2], "generation": [c1]}
    (row, lead), = analyze.size_rows(mx100, mx1000, picks, "lora")
    assert row == ["lora", "sst2", "85.0", "80.0", "82.0", "2.0", "70.0", "90.0", "no"]
    assert lead == pytest.approx((10.0, -8.0, 5.0))  # c1 led at 100, c2 leads at 1000
    (row, lead), = analyze.size_rows(mx100, mx1000_gen, picks, "lora")
    assert row == ["lora", "squad", "35.0", "30.0", "40.0", "10.0", "–", "–", "–"] and lead is None


def test_size_summary_counts_per_method(analyze):
    # Two sets: the top 1 keeps its lead on one, loses it on the other; more data alone beats
    # the best size-100 config on the second only.
    note = analyze.size_summary([(10.0, 4.0, -1.0), (6.0, -2.0, 3.0)])
    assert "same at both sizes on 1 of 2" in note
    assert "by 8.0 points on average at 100 rows and by 1.0 at 1000" in note
    assert "beats the best grid config at 100 rows on 1 of 2" in note
    assert analyze.size_summary([]) == ""


def test_lora_vs_full_counts_wins_and_ties_on_shared_datasets(analyze):
    lora = {"sst2": (94.0, "a"), "trec": (94.5, "b"), "squad": (66.4, "c")}
    full = {"sst2": (94.0, "d"), "trec": (93.5, "e")}  # squad not run for full: left out
    rows, wins, ties, mean = analyze.lora_vs_full(lora, full)
    assert rows == [["sst2", "94.0", "94.0", "0.0"], ["trec", "94.5", "93.5", "1.0"]]
    assert (wins, ties) == (1, 1) and mean == pytest.approx(0.5)
    assert analyze.lora_vs_full(lora, {}) is None
