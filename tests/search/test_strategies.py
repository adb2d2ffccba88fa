"""Every strategy end to end on the cheap synthetic objective (real Optuna storage)."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from staytuned.search.objective import TrialSettings
from staytuned.search.runner import prepare_spec, tune
from staytuned.search.storage import HeartbeatSettings
from staytuned.search.strategies import STRATEGIES, offline_from_table
from staytuned.search.study import StudySpec, trial_rows

from .conftest import SYNTH, demo_table


def _spec(tmp_path, strategy, n=5, **kw):
    return StudySpec(storage=f"sqlite:///{tmp_path}/s.db", study_name=f"s-{strategy}", task="t1",
                     model="m", space="preset:demo", strategy=strategy, n_trials=n, trial_fn=SYNTH,
                     settings=TrialSettings(train_size=10), heartbeat=HeartbeatSettings(1, 3), **kw)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_runs_to_budget(tmp_path, strategy):
    table = demo_table(tmp_path / "offline.csv")
    spec = prepare_spec(_spec(tmp_path, strategy, n=5, cbs_k=2), cbs_table=str(table))
    outcome = tune(spec)
    assert outcome.counts.finished == 5 and outcome.counts.complete == 5
    assert outcome.best is not None and 0.5 < outcome.best.value < 1.0
    rows = trial_rows(optuna.load_study(study_name=spec.study_name, storage=spec.storage))
    assert all(r["status"] == "ok" and r["config_id"] for r in rows)
    if strategy in ("grid", "cbs", "cbs-adaptive", "transfer"):  # finite config lists: no config twice
        assert len({r["config_id"] for r in rows}) == 5
    # resume: running the same spec again adds nothing
    assert tune(spec).ran == 0


def test_cbs_enqueues_the_ranking_in_order(tmp_path):
    table = demo_table(tmp_path / "offline.csv")
    spec = prepare_spec(_spec(tmp_path, "cbs", n=3), cbs_table=str(table))
    ranked = offline_from_table(str(table), method="lora").ranked[:3]
    tune(spec)
    import optuna

    study = optuna.load_study(study_name=spec.study_name, storage=spec.storage)
    got = [t.params for t in sorted(study.trials, key=lambda t: t.number)]
    want = [{k: r[k] for k in ("learning_rate", "lr_scheduler", "lora_r")} for r in ranked]
    assert got == want


def test_cbs_tpe_tries_cbs_first_then_tpe(tmp_path):
    table = demo_table(tmp_path / "offline.csv")
    spec = prepare_spec(_spec(tmp_path, "cbs+tpe", n=5, cbs_k=2), cbs_table=str(table))
    tune(spec)
    import optuna

    study = optuna.load_study(study_name=spec.study_name, storage=spec.storage)
    trials = sorted(study.trials, key=lambda t: t.number)
    assert all("fixed_params" in t.system_attrs for t in trials[:2])
    assert not any("fixed_params" in t.system_attrs for t in trials[2:])


def test_shipped_recommendations_feed_cbs(tmp_path):
    spec = prepare_spec(_spec(tmp_path, "cbs", n=2, method="lora"))
    assert spec.offline is not None and spec.offline.provenance == "shipped recommendations"
    outcome = tune(spec)
    assert outcome.counts.complete == 2


def test_cbs_adaptive_follows_the_agreeing_cluster(tmp_path):
    """d0/d2 like lr 1e-3, d1/d3 like 2e-4; the synthetic objective (task t1) prefers 2e-4..3e-4.
    After two observations cbs-adaptive must move to the low-learning-rate configs."""
    table = demo_table(tmp_path / "offline.csv")
    spec = prepare_spec(_spec(tmp_path, "cbs-adaptive", n=4), cbs_table=str(table))
    tune(spec)
    import optuna

    study = optuna.load_study(study_name=spec.study_name, storage=spec.storage)
    lrs = [t.params["learning_rate"] for t in sorted(study.trials, key=lambda t: t.number)]
    assert len(set(map(str, [t.params for t in study.trials]))) == 4
    assert 2e-4 in lrs[:2] and 1e-3 in lrs[:2]  # coverage: one config per cluster first
    best = max(study.trials, key=lambda t: t.value)
    assert best.params["learning_rate"] == 2e-4


def test_failed_trials_do_not_stop_the_study(tmp_path):
    space = {"params": {"learning_rate": {"type": "float", "values": [1e-4, 0.06, 3e-4]}},
             "fixed": {"epochs": 1}}
    spec = prepare_spec(StudySpec(storage=f"sqlite:///{tmp_path}/f.db", study_name="f", task="t",
                                  model="m", space=space, strategy="grid", n_trials=3,
                                  trial_fn=SYNTH))
    outcome = tune(spec)
    assert (outcome.counts.complete, outcome.counts.failed) == (2, 1)
    import optuna

    study = optuna.load_study(study_name="f", storage=spec.storage)
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert failed[0].user_attrs["error"] == "loss is NaN (diverged)"
    assert failed[0].user_attrs["status"] == "failed"


def test_median_pruner_prunes_from_epoch_scores(tmp_path):
    space = {"params": {"learning_rate": {"type": "float", "values": [3e-4, 1e-5, 2e-5, 1e-2, 5e-3]}},
             "fixed": {"epochs": 3}}
    spec = prepare_spec(StudySpec(storage=f"sqlite:///{tmp_path}/p.db", study_name="p", task="t",
                                  model="m", space=space, strategy="grid", n_trials=5,
                                  trial_fn=SYNTH, pruner="median"))
    outcome = tune(spec)
    assert outcome.counts.finished == 5
    assert outcome.counts.pruned >= 1  # worse than the median of earlier trials at epoch 1


def test_user_attrs_follow_the_contract(tmp_path):
    spec = prepare_spec(_spec(tmp_path, "random", n=1))
    tune(spec)
    import optuna

    t = optuna.load_study(study_name=spec.study_name, storage=spec.storage).trials[0]
    for key in ("status", "error", "metrics", "metric", "score", "runtime_s", "train_tokens_per_s",
                "peak_memory_mb", "versions", "task", "model", "method", "train_size", "seed",
                "config_id", "loss_curve"):
        assert key in t.user_attrs, key
    assert t.user_attrs["versions"]["optuna"]
    assert np.isclose(t.user_attrs["score"], t.value)


def test_model_as_a_categorical_hp(tmp_path):
    space = {"params": {"model": ["tiny-llama", "tiny-mistral"],
                        "learning_rate": {"type": "float", "values": [1e-4, 3e-4]}}}
    spec = prepare_spec(StudySpec(storage=f"sqlite:///{tmp_path}/m.db", study_name="m", task="t",
                                  model=None, space=space, strategy="grid", n_trials=10,
                                  trial_fn=SYNTH))
    outcome = tune(spec)
    assert outcome.counts.complete == 4  # the whole 2 x 2 grid, then the grid budget stops it
    import optuna

    study = optuna.load_study(study_name="m", storage=spec.storage)
    assert sorted({t.user_attrs["model"] for t in study.trials}) == ["tiny-llama", "tiny-mistral"]
    assert all("model" not in t.user_attrs["config"] for t in study.trials)


@pytest.mark.slow
def test_cbs_adaptive_two_workers_plan_distinct_configs(tmp_path, monkeypatch):
    monkeypatch.setenv("STAYTUNED_SYNTHETIC_SLEEP", "0.3")  # the workers overlap
    table = demo_table(tmp_path / "offline.csv")
    spec = prepare_spec(_spec(tmp_path, "cbs-adaptive", n=6), cbs_table=str(table))
    outcome = tune(spec, workers=2)
    assert outcome.counts.complete >= 6
    study = optuna.load_study(study_name=spec.study_name, storage=spec.storage)
    configs = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(configs)) == len(configs)


def test_shipped_offline_takes_the_largest_size_for_the_whole_train_split(tmp_path, monkeypatch):
    import yaml

    from staytuned.cbs import recommendations
    from staytuned.search.strategies import shipped_offline

    recs = [{"model": "tiny-x", "method": "lora", "train_size": size, "rank": 1,
             "config": {"learning_rate": lr}} for size, lr in ((100, 1e-4), (1000, 1e-3))]
    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump({"models": {"tiny-x": {}}, "recommendations": recs}))
    shipped = recommendations._preset_files
    monkeypatch.setattr(recommendations, "_preset_files", lambda extra=(): shipped([preset, *extra]))
    assert shipped_offline("tiny-x", "lora", None).ranked == ({"learning_rate": 1e-3},)
    assert shipped_offline("tiny-x", "lora", 150).ranked == ({"learning_rate": 1e-4},)


@pytest.mark.parametrize(("pruner", "per_epoch"), [(None, False), ("median", True)])
def test_epochs_are_scored_only_when_a_pruner_can_use_them(tmp_path, monkeypatch, pruner, per_epoch):
    # A per-epoch evaluation costs a full pass over the validation rows (a generation pass on
    # summarization/QA), so a study without a pruner must not ask for one.
    import dataclasses
    import sys
    import types

    from staytuned.search.synthetic import synthetic_trial

    seen = []

    def probe(*args, on_epoch=None, **kwargs):
        seen.append(on_epoch is not None)
        return synthetic_trial(*args, on_epoch=on_epoch, **kwargs)

    monkeypatch.setitem(sys.modules, "staytuned_probe_trial", types.SimpleNamespace(probe=probe))
    spec = prepare_spec(_spec(tmp_path, "random", n=2, pruner=pruner))
    tune(dataclasses.replace(spec, trial_fn="staytuned_probe_trial:probe"))
    assert seen == [per_epoch] * 2


def _sampler_settings(sampler) -> dict:
    """Type and the settings that decide what a sampler proposes (its inner sampler's too)."""
    out = {"type": type(sampler).__name__}
    for attr in ("_n_startup_trials", "_multivariate", "_group", "_constant_liar",
                 "_warn_independent_sampling", "_n_ei_candidates", "_gamma", "settings"):
        if hasattr(sampler, attr):
            out[attr] = getattr(sampler, attr)
    inner = getattr(sampler, "_inner", None)
    if inner is not None:
        out["inner"] = _sampler_settings(inner)
    return out


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_simulate_replays_the_strategy_tune_runs(tmp_path, monkeypatch, strategy):
    """tune and simulate build the strategy through the same registry with the same settings:
    same class, same CBS-first count and cbs-adaptive settings, and wherever simulate samples,
    a sampler equal in type and settings (TPE: multivariate, group, constant liar, startup
    trials; GP: the duplicate guard over GPSampler) to the one tune's worker uses."""
    from staytuned.results import load_results
    from staytuned.search.simulate import simulate
    from staytuned.search.strategies import base, strategy_class

    built: list = []
    samplers: list = []
    real_class = base.strategy_class

    def spy_class(name):
        cls = real_class(name)

        def build(**kw):
            built.append(cls(**kw))
            return built[-1]

        return build

    monkeypatch.setattr(base, "strategy_class", spy_class)
    def recording(real):
        def sampler(self, *, storage_url=None):
            samplers.append((self, real(self, storage_url=storage_url)))
            return samplers[-1][1]
        return sampler

    for name in STRATEGIES:
        cls = strategy_class(name)
        if "sampler" in vars(cls):
            monkeypatch.setattr(cls, "sampler", recording(vars(cls)["sampler"]))

    table = demo_table(tmp_path / "offline.csv")
    spec = prepare_spec(_spec(tmp_path, strategy, n=3, cbs_k=2), cbs_table=str(table))
    tune(spec)
    tuned = [s for s in built if s.name == strategy]
    tune_samplers = [sm for st, sm in samplers if st.name == strategy]
    built.clear()
    samplers.clear()
    simulate(load_results(table).score_matrix(), strategies=[strategy], k=3, seeds=1, cbs_k=2)
    replayed = [s for s in built if s.name == strategy]
    sim_samplers = [sm for st, sm in samplers if st.name == strategy]

    assert tuned and replayed and tune_samplers
    want = tuned[0]
    for got in replayed:
        assert type(got) is type(want)
        assert (got.seed, got.n_trials, got.cbs_k, got.ranked_first) == \
            (want.seed, want.n_trials, want.cbs_k, want.ranked_first)
    if strategy in ("random", "tpe", "gp", "cbs+tpe"):  # simulate samples with the sampler
        assert sim_samplers
        for sm in sim_samplers:
            assert _sampler_settings(sm) == _sampler_settings(tune_samplers[0])
    if strategy == "tpe":  # TPESampler behind the duplicate guard
        s = _sampler_settings(sim_samplers[0])["inner"]
        assert (s["_multivariate"], s["_group"], s["_constant_liar"]) == (True, True, True)
    if strategy == "cbs-adaptive":  # simulate runs next_config with the sampler's settings
        assert all(r.settings == tune_samplers[0].settings for r in replayed)


def test_grid_strategy_runs_a_shaped_grid_exactly(tmp_path):
    """A space with ``points`` (or zip / half_fraction) is no plain product: ``tune --strategy
    grid`` runs its grid points in order, not GridSampler's product of the values."""
    space = {"params": {"learning_rate": {"type": "float", "values": [1e-4, 3e-4, 1e-3]},
                        "lr_scheduler": {"type": "categorical", "choices": ["linear", "constant"]}},
             "points": [{"learning_rate": 1e-3, "lr_scheduler": "constant"},
                        {"learning_rate": 1e-4, "lr_scheduler": "linear"}]}
    spec = prepare_spec(StudySpec(storage=f"sqlite:///{tmp_path}/z.db", study_name="z", task="t",
                                  model="m", space=space, strategy="grid", n_trials=10,
                                  trial_fn=SYNTH))
    assert tune(spec).counts.finished == 2
    study = optuna.load_study(study_name="z", storage=spec.storage)
    assert [t.params for t in sorted(study.trials, key=lambda t: t.number)] == space["points"]


def test_strategies_simulate_and_executors_import_no_heavy_module():
    import subprocess
    import sys

    code = ("import sys, staytuned.search.strategies, staytuned.search.simulate, "
            "staytuned.search.executors, staytuned.search.executors.ray, "
            "staytuned.search.executors.local, staytuned.search.runner; "
            "print(sorted(m for m in ('torch', 'transformers', 'peft', 'ray', 'plotly', 'pandas') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cbs_for_qlora_ranks_the_lora_configs_where_qlora_has_none():
    from staytuned.cbs import shipped_table
    from staytuned.search.strategies import shipped_offline

    table = str(shipped_table("smollm2-135m"))  # lora and full rows, no qlora
    lora = offline_from_table(table, method="lora", train_size=100).ranked
    assert offline_from_table(table, method="qlora", train_size=100).ranked == lora
    assert lora != offline_from_table(table, method="full", train_size=100).ranked
    assert shipped_offline("smollm2-135m", "qlora", 100).ranked == shipped_offline("smollm2-135m", "lora", 100).ranked
