"""Report sections computed from runs: hand-computed expectations."""

from __future__ import annotations

import math

import pytest

from staytuned.report.panels import (
    ImportancePanel,
    Skip,
    failed_panel,
    heatmap_panels,
    history_panels,
    importance_panel,
    normalized_scores,
    pareto_panels,
)
from staytuned.report.runs import ReportInput, Run, StudyInfo, from_storage, from_table


def _run(ds, lr, ep, score, status="ok", number=0, study="s", values=None, error=None):
    return Run(dataset=ds, config_id=f"{lr}-{ep}", params={"learning_rate": lr, "epochs": ep},
               score=score if status == "ok" else math.nan, status=status, study=study, number=number,
               values=values, error=error)


def test_normalized_scores_per_dataset_and_direction():
    runs = (_run("a", 1, 1, 0.5), _run("a", 2, 1, 0.7), _run("a", 3, 1, 0.9),
            _run("b", 1, 1, 2.0), _run("b", 2, 1, 1.0))  # b: a loss, lower is better
    inp = ReportInput(source="x", kind="storage", runs=runs, directions={"a": "max", "b": "min"})
    assert normalized_scores(inp) == pytest.approx({0: 0.0, 1: 0.5, 2: 1.0, 3: 0.0, 4: 1.0})


def test_heatmap_means_by_hand():
    # dataset a: two seeds of (1e-4, 1) -> mean 0.6; dataset b only one cell
    runs = (_run("a", 1e-4, 1, 0.5), _run("a", 1e-4, 1, 0.7), _run("a", 3e-4, 1, 0.9),
            _run("a", 1e-4, 2, 0.4), _run("b", 3e-4, 2, 0.3), _run("a", 3e-4, 2, 0.1, status="failed"))
    inp = ReportInput(source="x", kind="table", runs=runs, directions={"a": "max", "b": "max"})
    panels = heatmap_panels(inp, Skip("none"))
    a = panels[0]
    assert (a.dataset, a.x_name, a.y_name) == ("a", "epochs", "learning_rate")  # no importance: name order
    assert a.x_labels == ["1", "2"] and a.y_labels == ["0.0001", "0.0003"]
    assert a.z[0][0] == pytest.approx(0.6) and a.counts[0][0] == 2
    assert a.z[0][1] == pytest.approx(0.4) and a.z[1][0] == pytest.approx(0.9)
    assert a.z[1][1] is None  # the only run there failed
    assert panels[1].dataset == "b" and panels[1].z == [[0.3]]


def test_heatmap_follows_importance_order():
    runs = tuple(_run("a", lr, ep, 0.1) for lr in (1, 2) for ep in (1, 2))
    inp = ReportInput(source="x", kind="table", runs=runs)
    imp = ImportancePanel(importances={"learning_rate": 0.9, "epochs": 0.1}, target="score", n_trials=4)
    assert heatmap_panels(inp, imp)[0].x_name == "learning_rate"


def test_fanova_finds_the_only_hp_that_matters():
    # score depends on learning_rate only; epochs is noise-free irrelevant
    runs = tuple(_run("a", lr, ep, {1e-5: 0.2, 1e-4: 0.9, 1e-3: 0.5}[lr])
                 for lr in (1e-5, 1e-4, 1e-3) for ep in (1, 2, 3))
    panel = importance_panel(ReportInput(source="x", kind="table", runs=runs, directions={"a": "max"}))
    assert isinstance(panel, ImportancePanel)
    # fANOVA fits a random forest: an estimate, so a margin rather than exactly 1.0
    assert panel.importances["learning_rate"] > 0.8 > 0.2 > panel.importances["epochs"]
    assert sum(panel.importances.values()) == pytest.approx(1.0)


def test_history_best_so_far():
    runs = (_run("a", 1, 1, 0.5, number=0), _run("a", 2, 1, 0.4, number=1),
            _run("a", 3, 1, 0.8, number=2), _run("a", 4, 1, 0.0, status="failed", number=3))
    info = StudyInfo(name="s", kind="tune", directions=("max",), objective_names=("score",), n_trials=4, states={})
    (panel,) = history_panels(ReportInput(source="x", kind="storage", runs=runs, studies=(info,)))
    assert panel.series["a"] == {"number": [0.0, 1.0, 2.0], "value": [0.5, 0.4, 0.8], "best": [0.5, 0.5, 0.8]}
    assert isinstance(history_panels(ReportInput(source="x", kind="table", runs=runs)), Skip)


def test_pareto_front_by_hand():
    # maximize x, minimize y: (1, 5) and (2, 9) are optimal; (1, 7) is dominated by (1, 5)
    pts = [(1.0, 5.0), (2.0, 9.0), (1.0, 7.0), (0.5, 6.0)]
    runs = tuple(Run(dataset="d", config_id=str(i), params={"t": i}, score=x, status="ok", study="dec",
                     number=i, values=(x, y)) for i, (x, y) in enumerate(pts))
    info = StudyInfo(name="dec", kind="decode", directions=("max", "min"), objective_names=("acc", "tokens"),
                     n_trials=4, states={})
    (panel,) = pareto_panels(ReportInput(source="x", kind="storage", runs=runs, studies=(info,)))
    assert [p["pareto"] for p in panel.points] == [True, True, False, False]
    single = StudyInfo(name="s", kind="decode", directions=("max",), objective_names=("a",), n_trials=0, states={})
    skip = pareto_panels(ReportInput(source="x", kind="storage", runs=(), studies=(single,)))
    assert isinstance(skip, Skip) and "fewer than 2 finished trials" in skip.reason


def test_failed_section_says_when_nothing_failed():
    inp = ReportInput(source="x", kind="table", runs=(_run("a", 1, 1, 0.5),))
    skip = failed_panel(inp)
    assert isinstance(skip, Skip) and "no failed" in skip.reason


def test_from_storage_reads_documented_user_attrs(storage_url):
    inp = from_storage(storage_url)
    assert {s.name for s in inp.studies} == {"grid-demo", "decode-demo", "decode-secondary"}
    failed = [r for r in inp.runs if r.status == "failed"]
    assert len(failed) == 3 and all("out of memory" in r.error for r in failed)
    grid = [r for r in inp.runs if r.study == "grid-demo"]
    assert {r.dataset for r in grid} == {"sst2", "trec", '<script>window.__pwned=1</script>ds"3'}
    assert grid[0].config_id == "lr3e-05-ep1-linear" and grid[0].model == "tiny-llama"
    # the CBS view: 12 configs x 3 datasets
    assert len(inp.table.datasets) == 3 and len(inp.table.config_ids) == 12


def test_from_table_keeps_errors(table_csv):
    inp = from_table(table_csv)
    failed = [r for r in inp.runs if r.status == "failed"]
    assert len(failed) == 1 and failed[0].error == "NaN loss <b>boom</b>" and failed[0].dataset == "b"
    assert failed[0].number == 7  # CSV row number (header = row 1)


def test_decoding_study_pareto_over_secondaries(storage_url):
    inp = from_storage(storage_url, "decode-secondary")
    panels = pareto_panels(inp)
    by_y = {p.names[1]: p for p in panels}
    assert set(by_y) == {"output_tokens", "distinct_n"}  # repetition_rate was not measured
    # accuracy (max) vs output_tokens (min): t=0 (0.70, 10) and t=0.5 (0.75, 14) are optimal;
    # t=1.0 (0.72, 20) is dominated by t=0.5, t=1.5 by everything
    assert [p["pareto"] for p in by_y["output_tokens"].points] == [True, True, False, False]
    # accuracy (max) vs distinct_n (max): t=0.5 (0.75, 0.6) and t=1.0 (0.72, 0.8)
    assert [p["pareto"] for p in by_y["distinct_n"].points] == [False, True, True, False]
    assert by_y["output_tokens"].names[0] == "accuracy"


def test_fanova_samples_big_inputs():
    runs = tuple(_run("a", lr, ep, 1.0 / lr ** 0.1 + ep * 1e-3) for lr in (1e-5, 1e-4, 1e-3) for ep in range(10))
    panel = importance_panel(ReportInput(source="x", kind="table", runs=runs, directions={"a": "max"}), max_runs=12)
    assert (panel.n_trials, panel.n_total) == (12, 30)
    assert panel.importances["learning_rate"] > panel.importances["epochs"]
