from __future__ import annotations

import os

from staytuned.search.executors import local as worker

SYNTH = "staytuned.search.synthetic:synthetic_trial"


def test_threads_per_worker_splits_the_cores(monkeypatch, tmp_path):
    # The usable CPUs, not the host's: 8 in the affinity mask, no cgroup quota, no exported pool.
    from staytuned.hardware import threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(threads, "CGROUP_ROOT", tmp_path)
    monkeypatch.setattr(threads, "PROC_SELF_CGROUP", tmp_path / "none")
    for var in threads.THREAD_ENV:
        monkeypatch.delenv(var, raising=False)
    assert [worker.threads_per_worker(n) for n in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]


def test_limit_threads_sets_the_pool_unless_the_user_did(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "3")
    worker._limit_threads(1)
    assert os.environ["OMP_NUM_THREADS"] == "1"
    assert os.environ["MKL_NUM_THREADS"] == "3"


def test_for_worker_offsets_the_sampler_seed():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Spec:
        seed: int

    assert [worker.for_worker(Spec(5), i).seed for i in range(3)] == [5, 6, 7]


def test_make_executor_refuses_ray_settings_for_the_local_backend():
    import pytest

    from staytuned.errors import InputError
    from staytuned.search.executors import make_executor

    assert make_executor("local").describe(None) == "1 worker(s)"
    for kwargs, field in (({"cpus_per_trial": 2.0}, "cpus_per_trial"),
                          ({"gpus_per_trial": 0.5}, "gpus_per_trial"),
                          ({"ray_address": "auto"}, "ray_address")):
        with pytest.raises(InputError, match=f"field '{field}'.*only the ray backend"):
            make_executor("local", **kwargs)
    with pytest.raises(InputError, match=r"field 'backend'.*local or ray"):
        make_executor("slurm")
    with pytest.raises(InputError, match="field 'workers'"):
        make_executor("local").check(0)


def test_local_executor_runs_a_grid_and_reports_it(tmp_path):
    from staytuned.search.executors import make_executor
    from staytuned.search.objective import TrialSettings
    from staytuned.search.study import Cell, GridSpec

    spec = GridSpec(storage=f"sqlite:///{tmp_path}/g.db", name="g",
                    cells=(Cell("t1", "m", "lora", 10),), space="preset:demo",
                    settings=TrialSettings(eval_size=8), trial_fn=SYNTH)
    from staytuned.search.runner import prepare_grid

    report = make_executor("local").run(prepare_grid(spec))
    assert (report.trials_run, report.total, report.details) == (8, 8, None)
    assert make_executor("local").run(spec).trials_run == 0  # resume: nothing left
