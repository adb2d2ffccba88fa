from __future__ import annotations

import os

import pytest

from staytuned.errors import InputError
from staytuned.search.executors import local as worker
from staytuned.search.executors import make_executor

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


def test_make_executor_refuses_the_settings_of_the_other_backend(monkeypatch):
    from staytuned.hardware import gpus

    monkeypatch.setattr(gpus, "gpu_count", lambda: 0)  # a CPU-only machine
    assert make_executor("local").describe(None) == "1 worker(s)"
    for kwargs, field in (({"cpus_per_trial": 2.0}, "cpus_per_trial"),
                          ({"ray_address": "auto"}, "ray_address")):
        with pytest.raises(InputError, match=f"field '{field}'.*only the ray backend"):
            make_executor("local", **kwargs)
    with pytest.raises(InputError, match=r"field 'share_gpus'.*only the local backend"):
        make_executor("ray", share_gpus=True)
    with pytest.raises(InputError, match=r"field 'backend'.*local or ray"):
        make_executor("slurm")
    with pytest.raises(InputError, match="field 'workers'"):
        make_executor("local").check(0)


def test_local_executor_plans_workers_on_faked_gpus(monkeypatch):
    """The executor's side of staytuned.hardware.gpus: auto, errors, the header's words."""
    from staytuned.hardware import gpus

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(gpus, "gpu_count", lambda: 0)
    cpu = make_executor("local")
    assert [cpu.resolve(w) for w in (None, "auto", 3)] == [1, 1, 3]  # CPU-only: as today
    assert cpu.describe(3) == "3 worker(s)" and cpu.assign(3) == [None] * 3
    monkeypatch.setattr(gpus, "gpu_count", lambda: 4)
    local = make_executor("local")
    assert local.resolve("auto") == 4 and local.describe("auto") == (
        "4 workers, GPU 0, GPU 1, GPU 2 and GPU 3")
    two = make_executor("local", gpus_per_trial=2)
    assert two.resolve("auto") == 2 and two.describe("auto") == "2 workers, GPUs 0,1 and GPUs 2,3"
    assert make_executor("local").describe(None) == "1 worker, GPU 0"
    with pytest.raises(InputError, match=r"field 'workers'.*5 workers x 1 GPU\(s\)"):
        local.check(5)
    assert make_executor("local", share_gpus=True).assign(5) == ["0", "1", "2", "3", "0"]
    with pytest.raises(InputError, match="field 'gpus_per_trial'"):
        make_executor("local", gpus_per_trial=-1).check(None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    monkeypatch.setattr(gpus, "gpu_count", lambda: 2)
    assert make_executor("local").assign("auto") == ["2", "3"]


def test_spawned_workers_see_the_gpus_they_were_given(monkeypatch, tmp_path):
    """Real worker processes (spawned) of a synthetic grid: each holds its own
    CUDA_VISIBLE_DEVICES, taken from the parent's list; the parent's own value is unchanged."""
    from st_ray_helpers import PID_TRIAL, grid_spec

    from staytuned.hardware import gpus
    from staytuned.search.runner import prepare_grid

    monkeypatch.setattr(gpus, "gpu_count", lambda: 2)  # no GPU needed: only the env is checked
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    monkeypatch.setenv("ST_TEST_PIDDIR", str(tmp_path))
    monkeypatch.setenv("ST_TEST_MIN_PIDS", "2")  # both workers surely run a trial
    spec = prepare_grid(grid_spec(tmp_path / "g.db", trial_fn=PID_TRIAL))
    report = make_executor("local").run(spec, workers="auto")
    assert (report.trials_run, report.total) == (8, 8)
    seen: dict[str, set[str]] = {}
    for f in tmp_path.glob("attempt_*"):
        seen.setdefault(f.name.split("_")[2], set()).add(f.read_text())
    assert sorted(v for values in seen.values() for v in values) == ["5", "7"], seen
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5,7"


def test_local_executor_runs_a_grid_and_reports_it(tmp_path):
    from staytuned.search.objective import TrialSettings
    from staytuned.search.study import Cell, GridSpec

    spec = GridSpec(storage=f"sqlite:///{tmp_path}/g.db", name="g",
                    cells=(Cell("t1", "m", "lora", 10),), space="preset:demo",
                    settings=TrialSettings(eval_size=8), trial_fn=SYNTH)
    from staytuned.search.runner import prepare_grid

    report = make_executor("local").run(prepare_grid(spec))
    assert (report.trials_run, report.total, report.details) == (8, 8, None)
    assert make_executor("local").run(spec).trials_run == 0  # resume: nothing left
