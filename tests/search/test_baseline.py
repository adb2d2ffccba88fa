"""The untuned baseline: scored once per model/task/rows/scoring settings, then read back."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from staytuned.hparams.execution import ExecutionSettings
from staytuned.search.baseline import untuned_baseline
from staytuned.search.objective import TrialSettings
from staytuned.search.study import StudySpec
from staytuned.search.synthetic import UNTUNED_SCORE

SPACE = {"params": {"learning_rate": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True,
                                      "values": [1e-4, 1e-3]}},
         "fixed": {"max_seq_length": 64, "epochs": 1}}


def _spec(tmp_path: Path, **settings: object) -> StudySpec:
    return StudySpec(storage=f"sqlite:///{tmp_path / 's.db'}", study_name="s", task="sst2",
                     model="tiny-llama", space=SPACE, trial_fn="staytuned.search.synthetic:synthetic_trial",
                     settings=TrialSettings(**{"train_size": 16, "eval_size": 8, **settings}))  # type: ignore[arg-type]


def test_scored_once_then_read_back(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = untuned_baseline(_spec(tmp_path), cache_dir=cache)
    assert first is not None and not first.cached
    assert first.score == UNTUNED_SCORE and first.metric == "accuracy" and first.n_eval == 8
    assert len(list(cache.glob("*.json"))) == 1
    again = untuned_baseline(_spec(tmp_path), cache_dir=cache)
    assert again is not None and again.cached
    assert dataclasses.replace(again, cached=False) == first


def test_other_rows_or_settings_are_scored_anew(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    untuned_baseline(_spec(tmp_path), cache_dir=cache)
    other_rows = untuned_baseline(_spec(tmp_path, eval_size=16), cache_dir=cache)
    other_precision = untuned_baseline(_spec(tmp_path, execution=ExecutionSettings(precision="fp32")),
                                       cache_dir=cache)
    assert other_rows is not None and not other_rows.cached and other_rows.n_eval == 16
    assert other_precision is not None and not other_precision.cached
    assert len(list(cache.glob("*.json"))) == 3


def test_another_trainer_never_reads_the_native_baseline(tmp_path: Path) -> None:
    """A training command reports its own metric: a cached native untuned score is not its baseline."""
    cache = tmp_path / "cache"
    native = untuned_baseline(_spec(tmp_path), cache_dir=cache)
    trl = untuned_baseline(_spec(tmp_path, execution=ExecutionSettings(trainer="trl")), cache_dir=cache)
    assert native is not None and trl is not None and not trl.cached
    assert len(list(cache.glob("*.json"))) == 2


def test_no_baseline_without_a_single_model(tmp_path: Path) -> None:
    spec = dataclasses.replace(_spec(tmp_path), model=None)
    assert untuned_baseline(spec, cache_dir=tmp_path / "cache") is None
