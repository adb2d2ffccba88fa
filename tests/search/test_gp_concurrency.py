"""`gp` with concurrent workers: Optuna's GPSampler has no constant liar, so the strategy's
sampler must keep a second worker off the config a first worker is running (and, in a finite
space, off configs already tried)."""

from __future__ import annotations

import optuna
import pytest

from staytuned.search.objective import TrialSettings
from staytuned.search.runner import prepare_spec, tune
from staytuned.search.space import parse_space
from staytuned.search.storage import HeartbeatSettings
from staytuned.search.strategies import make_sampler
from staytuned.search.study import StudySpec

from .conftest import SYNTH

# A finite grid: 3 x 2 x 2 = 12 configs.
GRID = {"params": {"learning_rate": {"type": "float", "values": [1e-4, 3e-4, 1e-3]},
                   "lr_scheduler": {"type": "categorical", "choices": ["linear", "constant"]},
                   "lora_r": {"type": "int", "values": [8, 16], "when": {"method": "lora"}}}}
CONTEXT = {"method": "lora"}


@pytest.fixture(autouse=True)
def _quiet_optuna():
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    yield
    optuna.logging.set_verbosity(level)


def _ask(url: str, sampler) -> dict:
    """A second process's view: its own Study object on the shared storage; the trial is left
    RUNNING."""
    space = parse_space(GRID)
    study = optuna.load_study(study_name="s", storage=url, sampler=sampler)
    trial = study.ask()
    space.suggest(trial, CONTEXT)
    return dict(trial.params)


def _gp(url: str, seed: int = 3):
    return make_sampler("gp", parse_space(GRID), seed=seed, n_trials=9, context=CONTEXT,
                        storage_url=url)


def _plain_gp(seed: int = 3):
    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=3, warn_independent_sampling=False)


def test_plain_gpsampler_hands_a_running_config_to_a_second_worker(tmp_path):
    """The failure the guard exists for: same seed, A still running, B gets A's config."""
    url = f"sqlite:///{tmp_path}/plain.db"
    optuna.create_study(study_name="s", storage=url, direction="maximize")
    a = _ask(url, _plain_gp())
    b = _ask(url, _plain_gp())
    assert a == b


def test_gp_strategy_gives_a_second_worker_another_config(tmp_path):
    url = f"sqlite:///{tmp_path}/guarded.db"
    optuna.create_study(study_name="s", storage=url, direction="maximize")
    a = _ask(url, _gp(url))
    b = _ask(url, _gp(url))
    assert a != b
    study = optuna.load_study(study_name="s", storage=url)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.RUNNING] * 2


def test_gp_strategy_never_repeats_a_config_of_a_finite_space(tmp_path):
    """Past the random startup trials (GP model phase), with finished and running trials mixed:
    each new trial, asked by a fresh sampler (as a new worker would), gets an untried config,
    until all 12 are taken."""
    url = f"sqlite:///{tmp_path}/fill.db"
    optuna.create_study(study_name="s", storage=url, direction="maximize")
    study = optuna.load_study(study_name="s", storage=url)
    seen = []
    for i in range(12):
        params = _ask(url, _gp(url, seed=0))
        seen.append(tuple(sorted(params.items())))
        if i % 3 != 2:  # every third trial stays running
            value = params["learning_rate"] * 1000 + (params["lr_scheduler"] == "linear") \
                + 0.1 * params["lora_r"]
            study.tell(study.trials[-1].number, value)
    assert len(set(seen)) == 12


@pytest.mark.slow
def test_two_gp_workers_run_distinct_configs(tmp_path, monkeypatch):
    monkeypatch.setenv("STAYTUNED_SYNTHETIC_SLEEP", "0.3")  # the workers overlap
    spec = prepare_spec(StudySpec(storage=f"sqlite:///{tmp_path}/w.db", study_name="w", task="t1",
                                  model="m", space=GRID, strategy="gp", n_trials=8,
                                  trial_fn=SYNTH, settings=TrialSettings(train_size=10),
                                  heartbeat=HeartbeatSettings(1, 3)))
    outcome = tune(spec, workers=2)
    assert outcome.counts.complete == 8
    study = optuna.load_study(study_name="w", storage=spec.storage)
    configs = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(configs) == 8 and len(set(configs)) == 8
