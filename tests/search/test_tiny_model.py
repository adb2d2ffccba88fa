"""Every strategy end to end with real fine-tuning trials on the tiny model (run_trial)."""

from __future__ import annotations

import pytest

from staytuned.search.objective import TrialSettings
from staytuned.search.runner import prepare_spec, tune
from staytuned.search.strategies import STRATEGIES
from staytuned.search.study import StudySpec

from .conftest import demo_table

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategy_on_tiny_llama(tmp_path, strategy):
    table = demo_table(tmp_path / "offline.csv")
    spec = StudySpec(storage=f"sqlite:///{tmp_path}/t.db", study_name=strategy, task="sst2",
                     model="tiny-llama", space="preset:demo", strategy=strategy, n_trials=2,
                     cbs_k=1, pruner="median",
                     settings=TrialSettings(train_size=8, eval_size=8,
                                            overrides={"max_seq_length": 32}))
    spec = prepare_spec(spec, cbs_table=str(table))
    assert spec.direction == "max"  # from the task (accuracy)
    outcome = tune(spec)
    assert outcome.counts.finished == 2, outcome
    assert outcome.best is not None and 0.0 <= outcome.best.value <= 1.0
    assert outcome.best.metrics["accuracy"] == outcome.best.value
    assert outcome.best.config["max_seq_length"] == 32
