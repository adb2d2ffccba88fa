"""A local Ray (``ray.init(num_cpus=2)`` in this process): a grid on the real tiny-llama gives the
same results as the same grid run without Ray; a ``tune`` study stops exactly at its budget."""

from __future__ import annotations

import pytest
from st_ray_helpers import SPACE, all_trials, grid_results, grid_spec, worker_env

from staytuned.search.executors.ray import Progress, run_study_on_ray
from staytuned.search.objective import TrialSettings
from staytuned.search.study import Cell, StudySpec, run_grid_worker

pytestmark = [pytest.mark.ray]


def _trial_record(t):
    a = t.user_attrs
    return {"config": a["config"], "status": a["status"], "score": a["score"],
            "metrics": {k: v for k, v in a["metrics"].items() if k != "pid"},
            "epoch_scores": a["epoch_scores"], "loss_curve": a["loss_curve"],
            "n_train": a["n_train"], "n_eval": a["n_eval"]}


@pytest.mark.slow
def test_tiny_llama_grid_on_local_ray_matches_the_local_run(ray_local, tmp_path):
    import torch

    cells = (Cell("sst2", "tiny-llama", "lora", 16),)
    settings = TrialSettings(eval_size=16, seed=0)
    trial_fn = "staytuned.finetune:run_trial"
    local = grid_spec(tmp_path / "local.db", trial_fn=trial_fn, cells=cells, settings=settings)
    ray_spec = grid_spec(tmp_path / "ray.db", trial_fn=trial_fn, cells=cells, settings=settings)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the Ray workers (Ray sets OMP_NUM_THREADS=num_cpus)
    try:
        assert run_grid_worker(local) == 4
    finally:
        torch.set_num_threads(threads)

    seen: list[Progress] = []
    summary = run_study_on_ray(ray_spec, cpus_per_trial=1,
                               runtime_env={"env_vars": worker_env()}, on_progress=seen.append,
                               poll_s=0.5)

    assert summary.address != "local"  # the fixture's Ray was reused, not a new one started
    assert summary.workers == 2 and summary.nodes == 1
    assert summary.counts["complete"] == 4 and summary.done
    assert summary.trials_run == 4 and summary.worker_failures == []
    # same configs, same states, same scores ...
    assert grid_results(ray_spec) == grid_results(local)
    assert {v[1] for v in grid_results(local).values()} <= {0.0, 0.25, 0.5, 0.75, 1.0} | {
        i / 16 for i in range(17)}  # accuracy on 16 rows
    # ... and the same training: metrics, per-epoch scores and loss curves, trial by trial
    by_id = {t.user_attrs["config_id"]: _trial_record(t) for t in all_trials(local)}
    for t in all_trials(ray_spec):
        ours, theirs = _trial_record(t), by_id[t.user_attrs["config_id"]]
        assert ours["config"] == theirs["config"] and ours["score"] == theirs["score"]
        assert ours["metrics"] == pytest.approx(theirs["metrics"], rel=1e-6)
        assert [s for s, _ in ours["loss_curve"]] == [s for s, _ in theirs["loss_curve"]]
        assert [v for _, v in ours["loss_curve"]] == pytest.approx(
            [v for _, v in theirs["loss_curve"]], rel=1e-5)
        assert ours["epoch_scores"] == theirs["epoch_scores"]
    assert seen and seen[-1].total == 4
    assert [p.finished for p in seen] == sorted(p.finished for p in seen)


def test_tune_study_on_local_ray_stops_at_its_budget(ray_local, tmp_path):
    spec = StudySpec(storage=f"sqlite:///{tmp_path / 'tune.db'}", study_name="tune",
                     task="sst2", model="tiny-llama", space=SPACE | {"params": {
                         "learning_rate": {"type": "float", "low": 1e-5, "high": 1e-2,
                                           "log": True, "values": [1e-4, 1e-3]}}},
                     strategy="random", n_trials=7, seed=1,
                     trial_fn="staytuned.search.synthetic:synthetic_trial",
                     heartbeat=grid_spec(tmp_path / "x.db").heartbeat)
    summary = run_study_on_ray(spec, n_workers=2, cpus_per_trial=0.5)
    # two workers on the shared storage, yet exactly the budget: no trial more, none less
    assert summary.counts["finished"] == 7 and summary.counts["running"] == 0
    assert summary.trials_run == 7 and summary.total == 7 and summary.done
    assert summary.cpus_per_trial == 0.5 and summary.workers == 2
    lrs = [t.params["learning_rate"] for t in all_trials_of(spec)]
    assert len(set(lrs)) == 7 and all(1e-5 <= lr <= 1e-2 for lr in lrs)


def all_trials_of(spec: StudySpec):
    import optuna

    return optuna.load_study(study_name=spec.study_name, storage=spec.storage).get_trials()


def test_an_input_error_in_the_workers_stops_the_run_with_that_error(ray_local, tmp_path):
    from staytuned.errors import InputError

    spec = grid_spec(tmp_path / "bad.db", trial_fn="no_such_module:trial")
    with pytest.raises(InputError, match="cannot import trial function") as info:
        run_study_on_ray(spec, cpus_per_trial=1)
    assert info.type is InputError  # the worker's own error, not a Ray wrapper
