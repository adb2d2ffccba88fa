"""Reading results tables: roles, HPs, formats, failures, and bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from staytuned.errors import InputError
from staytuned.results import ColumnSpec, load_results


def _csv(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n", encoding="utf-8")
    return path


CANON = """
dataset,model,method,train_size,seed,config_id,hp_learning_rate,hp_epochs,metric,score,score_test,status
sst2,m,lora,100,0,c1,1e-4,3,accuracy,0.80,0.79,ok
sst2,m,lora,100,1,c1,1e-4,3,accuracy,0.90,0.89,ok
sst2,m,lora,100,0,c2,1e-5,3,accuracy,0.50,0.55,ok
trec,m,lora,100,0,c1,1e-4,3,accuracy,,,failed
trec,m,lora,100,0,c2,1e-5,3,accuracy,0.70,0.72,ok
trec,m,lora,100,0,c10,3e-4,1,accuracy,0.20,,ok
"""


def test_canonical_table(tmp_path: Path) -> None:
    t = load_results(_csv(tmp_path / "r.csv", CANON))
    assert t.hp_columns == ("hp_learning_rate", "hp_epochs")
    assert t.hps["c1"] == {"learning_rate": 1e-4, "epochs": 3}
    m = t.score_matrix()
    assert m.config_ids == ("c1", "c2", "c10") and m.datasets == ("sst2", "trec")
    assert m.scores[0, 0] == pytest.approx(0.85)  # seeds 0.80 and 0.90 aggregated by mean
    assert m.failed[0, 1] and math.isnan(m.scores[0, 1])
    assert m.missing[2, 0] and not m.missing[2, 1]
    assert m.directions == ("max", "max")
    assert any("never run" in n for n in m.notes) and any("failed" in n for n in m.notes)
    assert t.score_matrix(agg="max").scores[0, 0] == pytest.approx(0.90)
    assert t.score_matrix(agg="min").scores[0, 0] == pytest.approx(0.80)
    _choose, score, how = t.eval_matrices()
    assert "test score" in how
    assert score.scores[0, 0] == pytest.approx(0.84) and score.missing[2, 1]  # no test value: missing


def test_duplicate_rows_do_not_change_the_matrix(tmp_path: Path) -> None:
    once = load_results(_csv(tmp_path / "a.csv", CANON)).score_matrix()
    lines = CANON.strip().splitlines()
    twice = load_results(_csv(tmp_path / "b.csv", "\n".join([*lines, *lines[1:]]))).score_matrix()
    np.testing.assert_allclose(once.scores, twice.scores)


def test_json_hp_column_and_formats(tmp_path: Path) -> None:
    rows = [{"dataset": "d1", "hps": json.dumps({"learning_rate": 1e-4}), "score": 0.5},
            {"dataset": "d1", "hps": json.dumps({"learning_rate": 1e-5}), "score": 0.6},
            {"dataset": "d2", "hps": json.dumps({"learning_rate": 1e-4}), "score": 0.7}]
    jl = tmp_path / "r.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    t = load_results(jl)
    assert t.hps == {"c1": {"learning_rate": 1e-4}, "c2": {"learning_rate": 1e-5}}
    import pandas as pd

    pq = tmp_path / "r.parquet"
    pd.DataFrame(rows).to_parquet(pq)
    np.testing.assert_allclose(load_results(pq).score_matrix().scores, t.score_matrix().scores)


def test_foreign_table_hp_heuristic(tmp_path: Path) -> None:
    # 'acc2' is another metric (many distinct values) -> not an HP; 'lr' and 'opt' are HPs.
    lines = ["name,lr,opt,acc,acc2"]
    for i, d in enumerate(["x", "y"]):
        for j, (lr, opt) in enumerate([(0.1, "sgd"), (0.2, "sgd"), (0.1, "adam")]):
            lines.append(f"{d},{lr},{opt},{0.1 * j + i},{0.123 * j + 0.01 * i + 0.001}")
    t = load_results(_csv(tmp_path / "f.csv", "\n".join(lines)), ColumnSpec(dataset="name", score="acc"))
    assert t.hp_columns == ("lr", "opt") and len(t.hps) == 3
    t2 = load_results(tmp_path / "f.csv", ColumnSpec(dataset="name", score="acc", hps=("lr",)))
    assert len(t2.hps) == 2  # explicit HP columns
    with pytest.raises(InputError, match="every row is a different config"):
        load_results(tmp_path / "f.csv", ColumnSpec(dataset="name", score="acc", hps=("acc2",)))


# -- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "spec", "match", "row", "column"),
    [
        ("dataset,config_id\nd,c1\n", {}, "missing column", None, "score"),
        ("dataset,config_id,score\nd,c1,0.5\nd,c2,high\n", {}, "non-numeric score", 3, "score"),
        ("dataset,score,hps\nd,0.5,{\"lr\": 1}\nd,0.4,{lr: 2}\n", {}, "malformed JSON", 3, "hps"),
        ("dataset,config_id,score,status\nd,c1,0.5,maybe\n", {}, "unknown status", 2, "status"),
        ("dataset,config_id,score\n", {}, "empty", None, None),
        ("dataset,config_id,score\n,c1,0.5\n", {}, "empty dataset name", 2, "dataset"),
        ("dataset,config_id,score\nd,c1,0.5\n", {"config": "cfg"}, "missing column", None, "cfg"),
    ],
)
def test_bad_tables(tmp_path: Path, text: str, spec: dict, match: str, row: int | None, column: str | None) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(InputError, match=match) as exc:
        load_results(p, ColumnSpec(**spec))
    assert exc.value.file == str(p) and exc.value.row == row and exc.value.column == column
    assert str(p) in str(exc.value)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        load_results(tmp_path / "nope.csv")
    bad = tmp_path / "bin.csv"
    bad.write_bytes(b"\xff\xfe\x00garbage\x00\x81")
    with pytest.raises(InputError):
        load_results(bad)
    jl = tmp_path / "bad.jsonl"
    jl.write_text('{"dataset": "d", "score": 1}\n{oops\n')
    with pytest.raises(InputError, match="malformed JSON line") as exc:
        load_results(jl)
    assert exc.value.row == 2
