"""End to end on the real IBM rag-hpo-bench table (../shared): CLI numbers vs. a slow reference.

Choose on the ``-Dev`` splits, score on ``-Test``; ``-Dev-Sampled`` splits have no pair and are
left out. The reference (tests/cbs/conftest.py) is plain Python over dicts, read with ``csv``.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from staytuned.cli import build_app

pytestmark = pytest.mark.shared

HP = ["Chunk Size", "Chunk Overlap", "Embedding Model", "Top-K", "Generative Mode"]
K = 10


def _read(path: Path, metric: str):  # type: ignore[no-untyped-def]
    ids: dict[tuple, str] = {}
    dev: dict = {}
    test: dict = {}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            key = tuple(row[h] for h in HP)
            cid = ids.setdefault(key, f"c{len(ids) + 1}")
            name = row["Dataset"]
            if name.endswith("-Dev"):
                dev[(cid, name[: -len("-Dev")])] = float(row[metric])
            elif name.endswith("-Test"):
                test[(cid, name[: -len("-Test")])] = float(row[metric])
    configs = list(ids.values())
    bases = sorted({d for _, d in dev} & {d for _, d in test})
    return configs, bases, dev, test


@pytest.mark.parametrize("metric", ["LLMaaJ-AC", "Context Correctness"])
def test_rank_and_evaluate_match_reference(shared_dir: Path, tmp_path: Path, ref, metric: str) -> None:  # type: ignore[no-untyped-def]
    table = shared_dir / "tables" / "rag_hpo_bench.csv"
    if not table.exists():
        pytest.skip(f"{table} is absent")
    configs, bases, dev, test = _read(table, metric)
    assert len(configs) == 162 and bases == ["AIArxiv", "BioASQ", "ClapNQ", "MiniWiki", "WatsonQA"]
    common = ["--dataset-col", "Dataset", "--score-col", metric,
              "--hp-cols", ",".join(HP), "--choose-split", "Dev"]
    app = build_app()
    runner = CliRunner()

    # -- rank on the Dev splits ----------------------------------------------------------------
    rank_json = tmp_path / "rank.json"
    res = runner.invoke(app, ["cbs", "rank", str(table), *common, "--json", str(rank_json)])
    assert res.exit_code == 0, res.output
    got = json.loads(rank_json.read_text())["ranking"]
    covers, norm, mean = ref.tables(dev, configs, bases)
    want = ref.rank(covers, mean, configs, bases)
    assert [(r["config_id"], r["round"]) for r in got] == want
    best = {d: -math.inf for d in bases}
    union: set = set()
    for step, (c, _) in zip(got, want, strict=True):
        union |= covers[c]
        for d in bases:
            best[d] = max(best[d], norm[(c, d)])
        assert step["covered"] == len(union)
        assert step["mean_best_of_k"] == pytest.approx(sum(best.values()) / len(bases))

    # -- leave-one-dataset-out: choose on Dev, score on Test --------------------------------------
    ev_json = tmp_path / "ev.json"
    res = runner.invoke(app, ["cbs", "evaluate", str(table), *common, "--score-split", "Test",
                              "--k", str(K), "--json", str(ev_json)])
    assert res.exit_code == 0, res.output
    ev = json.loads(ev_json.read_text())
    assert ev["held_out"] == bases
    _, tnorm, _ = ref.tables(test, configs, bases)
    tcov, _, _ = ref.tables(test, configs, bases)
    sums = {m: [0.0] * K for m in ("cbs", "best-average", "random")}
    solved = {m: [0.0] * K for m in ("cbs", "best-average", "random")}
    for d in bases:
        train = [b for b in bases if b != d]
        cov_tr, _, mean_tr = ref.tables({k: v for k, v in dev.items() if k[1] in train}, configs, train)
        orders = {
            "cbs": [c for c, _ in ref.rank(cov_tr, mean_tr, configs, train)],
            "best-average": sorted(configs, key=lambda c: (-mean_tr[c], ref.natkey(c))),
        }
        for m, order in orders.items():
            for k, v in enumerate(ref.best_of_k(order, tnorm, d, K)):
                sums[m][k] += v
                solved[m][k] += any(d in tcov[c] for c in order[: k + 1])
        vals = [tnorm[(c, d)] for c in configs]
        for k, v in enumerate(ref.random(vals, K)):
            sums["random"][k] += v
        for k, v in enumerate(ref.random_solved([d in tcov[c] for c in configs], K)):
            solved["random"][k] += v
    for m in sums:
        assert ev["methods"][m]["mean_best_of_k"] == pytest.approx([s / len(bases) for s in sums[m]]), m
        assert ev["methods"][m]["solved_fraction"] == pytest.approx([s / len(bases) for s in solved[m]]), m
    assert ev["methods"]["oracle"]["mean_best_of_k"] == [1.0] * K
    # CBS beats a random order on this table
    assert ev["methods"]["cbs"]["mean_best_of_k"][2] > ev["methods"]["random"]["mean_best_of_k"][2]


def test_auto_pairing_and_heuristic_hp_columns(shared_dir: Path) -> None:
    """Without --hp-cols the other metric columns are recognized as measurements, not HPs."""
    table = shared_dir / "tables" / "rag_hpo_bench.csv"
    if not table.exists():
        pytest.skip(f"{table} is absent")
    from staytuned.results import ColumnSpec, load_results

    t = load_results(table, ColumnSpec(dataset="Dataset", score="Lexical-FF"))
    assert t.hp_columns == tuple(HP) and len(t.hps) == 162
    choose, score, how = t.eval_matrices()
    assert "X-Dev" in how and choose.shape == score.shape == (162, 5)
