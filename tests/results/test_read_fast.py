"""The fast CSV reader (pyarrow, one parse per distinct cell) reads exactly what the pandas
reader does, on the awkward cases too; what it does not handle falls back to pandas."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from staytuned.results import ColumnSpec, load_results, read_columns
from staytuned.results.read import _build, _Column, _read_csv_fast

CASES = {
    "canonical": (
        "dataset,model,method,train_size,seed,config_id,hp_learning_rate,hp_epochs,metric,score,score_test,status\n"
        "sst2,m,lora,100,0,c1,1e-4,3,accuracy,0.80,0.79,ok\n"
        "sst2,m,lora,100,1,c1,1e-4,3,accuracy,0.90,0.89,ok\n"
        "trec,m,lora,100,0,c1,1e-4,3,accuracy,,,failed\n"
        "trec,m,lora,100,0,c10,3e-4,1,accuracy,0.20,,ok\n"),
    "hp columns inferred, ints and floats, blanks, a measurement": (
        "dataset,lr,epochs,opt,other_metric,score\n"
        "007,1e-4,3,adam,0.11,0.5\n007,1e-4,3.0,,0.12,nan\n007,2e-4,3,NA,0.13,0.25\n"
        "d2,1e-4,3,adam,0.14,0.6\nd2,1e-4,3.0,,0.15,0.7\nd2,2e-4,3,NA,0.16,1e3\n"),
    "json hps with a quoted comma, unicode, CRLF, BOM": (
        "\ufeffdataset,hps,score\r\n"
        "ré,\"{\"\"lr\"\":1,\"\"sched\"\":\"\"a,b\"\"}\",0.5\r\nré,\"{\"\"lr\"\":2}\",0.75\r\n"
        "x,\"{\"\"lr\"\":1,\"\"sched\"\":\"\"a,b\"\"}\",0.25\r\nx,\"{\"\"lr\"\":2}\",\r\n"),
    "a results export: JSON cells with ', ' inside quotes": (
        "dataset,config_id,hp_lr,metrics,versions,score\n"
        "d1,c1,1e-4,\"{\"\"acc\"\": 0.5, \"\"f1\"\": 0.4}\",\"{\"\"torch\"\": \"\"2\"\"}\",0.5\n"
        "d1,c2,1e-3,\"{\"\"acc\"\": 0.7, \"\"f1\"\": 0.6}\",\"{\"\"torch\"\": \"\"2\"\"}\",0.7\n"
        "d2,c1,1e-4,\"{\"\"acc\"\": 0.2, \"\"f1\"\": 0.1}\",\"{\"\"torch\"\": \"\"2\"\"}\",0.2\n"),
    "config ids that look like numbers": (
        "dataset,config_id,score,status\n1,07,0.5,ok\n1,7,0.6,OK\n2,07,0.1,pruned\n2,7.0,0.2,\n"),
}


def _same(a, b) -> None:  # type: ignore[no-untyped-def]
    for name in ("dataset", "config", "failed", "rows", "seed", "model", "method", "train_size", "metric",
                 "split", "group"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.tolist() == y.tolist(), name
    for name in ("score", "test_score"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            np.testing.assert_array_equal(x, y)
    assert json.dumps(a.hps, sort_keys=True) == json.dumps(b.hps, sort_keys=True)
    assert {c: {k: type(v) for k, v in h.items()} for c, h in a.hps.items()} == \
        {c: {k: type(v) for k, v in h.items()} for c, h in b.hps.items()}
    assert list(a.hps) == list(b.hps)
    assert a.hp_columns == b.hp_columns and a.notes == b.notes


@pytest.mark.parametrize("case", sorted(CASES))
def test_fast_reader_matches_pandas(tmp_path: Path, case: str) -> None:
    p = tmp_path / "t.csv"
    p.write_bytes(CASES[case].encode("utf-8"))
    assert _read_csv_fast(p, {"score", "score_test"}) is not None  # the fast path reads it
    cols, lists, rowno = read_columns(p)
    slow = _build(str(p), cols, {c: _Column.of(v) for c, v in lists.items()},
                  np.array([rowno(i) for i in range(len(lists[cols[0]]))]), ColumnSpec())
    fast = load_results(p)
    _same(fast, slow)
    m1, m2 = fast.score_matrix(), slow.score_matrix()
    assert m1.config_ids == m2.config_ids and m1.datasets == m2.datasets
    np.testing.assert_array_equal(m1.scores, m2.scores)


@pytest.mark.parametrize("text", [
    "dataset, config_id, score\nd, c1, 0.5\n",  # spaces after commas: pandas' skipinitialspace
    'dataset,config_id,score\nd, "c,1",0.5\n',  # a quoted cell after a blank
    "dataset,config_id,score\nd,c1,0.5\nd,c2,high\n",  # a score the fast parser rejects
    "dataset,dataset,score\nd,c1,0.5\n",  # duplicate header names
])
def test_unusual_files_take_the_pandas_path(tmp_path: Path, text: str) -> None:
    p = tmp_path / "t.csv"
    p.write_text(text)
    assert _read_csv_fast(p, {"score"}) is None


def test_failed_scores_and_rows_named_like_before(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("dataset,config_id,score\nd,c1,0.5\nd,c2,0.25\ne,c1,\n")
    t = load_results(p)
    assert t.rows.tolist() == [2, 3, 4] and t.failed.tolist() == [False, False, True]
    assert math.isnan(t.score[2])
