"""A report on a real results table written by others (IBM's RAG HPO grid in ../shared)."""

from __future__ import annotations

import pytest

from staytuned.report import write_report
from staytuned.results import ColumnSpec

pytestmark = pytest.mark.shared


@pytest.mark.slow
def test_rag_hpo_bench_report(shared_dir, tmp_path):
    table = shared_dir / "tables" / "rag_hpo_bench.csv"
    if not table.exists():
        pytest.skip("rag_hpo_bench.csv is absent")
    result = write_report(str(table), tmp_path / "rag.html", png_dir=tmp_path / "png",
                          columns=ColumnSpec(dataset="Dataset", score="LLMaaJ-AC"))
    assert result.n_runs == 1944 and len(result.datasets) == 12
    for name in ("coverage", "heatmaps", "importance", "parallel"):
        assert result.sections[name] == "shown"
    assert result.sections["failed"].startswith("not applicable: no failed")
    assert sum(p.name.startswith("heatmap_") for p in result.pngs) == 12


def test_rag_hpo_bench_importance(shared_dir):
    """The generator LLM explains most of LLMaaJ-AC (fANOVA, measured on 1,944 runs: ~0.95)."""
    from staytuned.report import load_input
    from staytuned.report.panels import heatmap_panels, importance_panel

    table = shared_dir / "tables" / "rag_hpo_bench.csv"
    if not table.exists():
        pytest.skip("rag_hpo_bench.csv is absent")
    inp = load_input(str(table), columns=ColumnSpec(dataset="Dataset", score="LLMaaJ-AC"))
    imp = importance_panel(inp)
    top = max(imp.importances, key=imp.importances.get)
    assert top == "Generative Mode" and imp.importances[top] > 0.5
    heat = heatmap_panels(inp, imp)[0]
    assert heat.x_name == "Generative Mode" and len(heat.x_labels) == 3  # three generator LLMs


def test_rag_coverage_matches_cbs_evaluate(shared_dir):
    """The report's curves are the CBS engine's (Dev chooses, Test scores, as `staytuned cbs evaluate`)."""
    from staytuned.cbs import evaluate
    from staytuned.report import load_input
    from staytuned.report.panels import coverage_panels

    table = shared_dir / "tables" / "rag_hpo_bench.csv"
    if not table.exists():
        pytest.skip("rag_hpo_bench.csv is absent")
    inp = load_input(str(table), columns=ColumnSpec(dataset="Dataset", score="LLMaaJ-AC"))
    (panel,) = coverage_panels(inp, k=10)
    choose, scoring, _ = inp.table.eval_matrices("Dev", "Test", direction="max")
    ev = evaluate(choose, scoring, k=10)
    assert panel.curves == {m: c.mean_best_of_k for m, c in ev.methods.items()}
    assert len(panel.datasets) == 5  # AIArxiv, BioASQ, ClapNQ, MiniWiki, WatsonQA (Dev halves)
    assert any("no Dev/Test pair" in n for n in panel.notes)
