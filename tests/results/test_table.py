"""ResultsTable: aggregation of repeated runs, directions, slicing and Dev/Test pairing."""

from __future__ import annotations

import pytest

from staytuned.errors import InputError
from staytuned.results import from_records


def test_median_of_seeds() -> None:
    rows = [{"dataset": "d", "config_id": "a", "score": s} for s in (0.1, 0.5, 0.9, 1.0)]
    rows.append({"dataset": "d", "config_id": "b", "score": 0.3})
    m = from_records(rows).score_matrix(agg="median")
    assert m.scores[:, 0].tolist() == pytest.approx([0.7, 0.3])


def test_lower_is_better_from_metric_name() -> None:
    rows = [{"dataset": "d", "config_id": "a", "metric": "eval_loss", "score": 1.0},
            {"dataset": "e", "config_id": "a", "metric": "rougeL", "score": 1.0}]
    m = from_records(rows).score_matrix()
    assert m.directions == ("min", "max")
    assert from_records(rows).score_matrix(direction={"eval_loss": "max"}).directions == ("max", "max")


def test_slice_and_mixed_models() -> None:
    rows = [{"dataset": "d", "config_id": "a", "model": mdl, "train_size": ts, "score": 0.1 * i}
            for i, (mdl, ts) in enumerate([("mistralai/Mistral-7B-v0.1", 100), ("llama-3-8b", 100),
                                           ("llama-3-8b", 1000)])]
    t = from_records(rows)
    with pytest.raises(InputError, match="several model"):
        t.score_matrix()
    s = t.slice(model="Meta-Llama-3-8B", train_size="1000.0")
    assert len(s) == 1 and s.score_matrix().scores[0, 0] == pytest.approx(0.2)
    with pytest.raises(InputError, match="no rows with model"):
        t.slice(model="gpt2")


def test_split_pairing() -> None:
    rows = []
    for d in ("A-Dev", "A-Test", "B-Dev", "B-Test", "B-Dev-Sampled"):
        for c, s in (("x", 0.5), ("y", 0.6)):
            rows.append({"dataset": d, "config_id": c, "score": s + (0.1 if d.endswith("Test") and c == "x" else 0)})
    t = from_records(rows)
    a, b, how = t.eval_matrices()
    assert a.datasets == b.datasets == ("A", "B") and "X-Dev" in how
    assert a.scores[:, 0].tolist() == pytest.approx([0.5, 0.6])
    assert b.scores[:, 0].tolist() == pytest.approx([0.6, 0.6])
    assert any("B-Dev-Sampled" in n for n in a.notes)
    m, what = t.choose_matrix("auto")
    assert m.datasets == ("A", "B") and "Dev" in what


def test_split_column_pairing() -> None:
    rows = [{"dataset": d, "split": sp, "config_id": c, "score": s}
            for d in ("a", "b") for sp, off in (("dev", 0.0), ("test", 0.2))
            for c, s in (("x", 0.1 + off), ("y", 0.5 - off))]
    rows.append({"dataset": "c", "split": "dev", "config_id": "x", "score": 0.3})
    t = from_records(rows)
    a, b, how = t.eval_matrices("dev", "test")
    assert a.datasets == ("a", "b") and how == "choose on dev, score on test"
    assert a.scores[:, 0].tolist() == pytest.approx([0.1, 0.5])
    assert b.scores[:, 0].tolist() == pytest.approx([0.3, 0.3])
    assert any("c (dev)" in n for n in a.notes)
    m, _ = t.choose_matrix("test")
    assert m.datasets == ("a", "b")
