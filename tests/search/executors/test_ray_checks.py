"""The checks run_study_on_ray makes before any Ray task starts (no cluster needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from st_ray_helpers import grid_spec

from staytuned.errors import InputError, StorageError
from staytuned.search.executors.ray import (
    _absolute_storage,
    _check_storage_reachable,
    _slots,
    run_study_on_ray,
)

NODES = {"nodes": [{"ip": "10.0.0.1", "cpus": 4.0, "gpus": 1.0},
                   {"ip": "10.0.0.2", "cpus": 2.0, "gpus": 0.0}],
         "driver_ip": "10.0.0.1", "address": "10.0.0.1:6379", "cpus": 6.0, "gpus": 1.0}


@pytest.mark.parametrize(("cpus", "gpus", "expected"), [
    (1, 0, 6),  # 4 + 2
    (0.5, 0, 12),  # fractions: 8 + 4
    (2, 0, 3),  # 2 + 1
    (3, 0, 1),  # only the 4-CPU node holds one
    (1, 0.5, 2),  # GPU-bound: 2 halves of the one GPU; the CPU-only node holds none
    (1, 0.25, 4),
    (2, 0.25, 2),  # CPU-bound on the GPU node: 4 CPUs / 2
    (1 / 3, 0, 18),  # 12 + 6, despite float rounding of 1/3
])
def test_slots_count_trials_that_fit_per_node(cpus, gpus, expected):
    assert _slots(NODES, cpus, gpus) == expected


def test_no_node_fits_one_trial_is_an_input_error():
    with pytest.raises(InputError, match=r"largest has 4 CPUs and 1 GPUs"):
        _slots(NODES, 1, 2)
    with pytest.raises(InputError, match="field 'cpus_per_trial'"):
        _slots(NODES, 8, 0)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"gpus_per_trial": 1.5}, "gpus_per_trial"),  # Ray: fractions only below 1
    ({"cpus_per_trial": -1}, "cpus_per_trial"),
    ({"cpus_per_trial": 0}, "cpus_per_trial"),  # and no GPU either
    ({"cpus_per_trial": float("nan")}, "cpus_per_trial"),
    ({"n_workers": 0}, "n_workers"),
])
def test_bad_resources_are_input_errors_before_ray_starts(tmp_path, kwargs, field):
    """The errors name the API parameter (the CLI renders it as its flag), never a flag."""
    with pytest.raises(InputError, match=f"field '{field}'") as info:
        run_study_on_ray(grid_spec(tmp_path / "x.db"), **kwargs)
    assert info.value.field == field and "--" not in str(info.value)
    assert not (tmp_path / "x.db").exists()  # nothing was created


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"workers": 0}, "workers"),
    ({"gpus_per_trial": 1.5}, "gpus_per_trial"),
])
def test_the_ray_executor_checks_before_ray_starts(tmp_path, kwargs, field):
    from staytuned.search.executors import make_executor

    workers = kwargs.pop("workers", None)
    executor = make_executor("ray", **kwargs)
    with pytest.raises(InputError, match=f"field '{field}'"):
        executor.run(grid_spec(tmp_path / "x.db"), workers=workers)
    assert not (tmp_path / "x.db").exists()


def test_sqlite_is_refused_when_a_node_is_another_machine():
    _check_storage_reachable("postgresql+psycopg2://u:p@db/x", NODES)  # fine anywhere
    with pytest.raises(StorageError, match=r"Ray nodes run on 10\.0\.0\.2.*PostgreSQL"):
        _check_storage_reachable("sqlite:////shared/study.db", NODES)
    same_machine = {**NODES, "nodes": [{"ip": "10.0.0.1", "cpus": 1.0, "gpus": 0.0},
                                       {"ip": "127.0.0.1", "cpus": 1.0, "gpus": 0.0}]}
    _check_storage_reachable("sqlite:////tmp/study.db", same_machine)
    with pytest.raises(StorageError, match="in-memory"):
        _check_storage_reachable("sqlite:///:memory:", same_machine)


def test_relative_sqlite_path_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = grid_spec("runs/g/study.db")
    assert _absolute_storage(spec).storage == f"sqlite:///{tmp_path / 'runs/g/study.db'}"
    absolute = grid_spec(f"sqlite:///{tmp_path}/a.db")
    assert _absolute_storage(absolute) is absolute
    pg = grid_spec("postgresql+psycopg2://u@h/db")
    assert _absolute_storage(pg).storage == pg.storage
    assert Path(_absolute_storage(grid_spec("b.db")).storage[len("sqlite:///"):]).is_absolute()


@pytest.mark.ray
def test_address_without_a_ray_head_is_an_input_error_not_a_hang(tmp_path):
    from st_ray_helpers import free_port

    port = free_port()  # nothing listens there
    with pytest.raises(InputError, match=rf"field 'address'.*127\.0\.0\.1:{port}"):
        run_study_on_ray(grid_spec(tmp_path / "x.db"), address=f"127.0.0.1:{port}")
    with pytest.raises(InputError, match="not a Ray address"):
        run_study_on_ray(grid_spec(tmp_path / "x.db"), address="headnode")


def test_gpus_per_trial_defaults_to_one_on_a_cluster_with_gpus():
    from staytuned.search.executors.ray import default_gpus

    assert default_gpus(None, NODES) == 1.0
    assert default_gpus(None, {**NODES, "gpus": 0.0}) == 0.0
    assert default_gpus(0.5, NODES) == 0.5 and default_gpus(0, NODES) == 0


def test_each_ray_task_requests_the_gpus_of_one_trial(tmp_path):
    """What Ray is asked for (a stand-in for ray.remote: no Ray started)."""
    from staytuned.search.executors.ray import _prepare, _Run

    class FakeRay:
        options: dict | None = None

        def remote(self, fn):
            ray = self

            class Remote:
                def options(self, **kwargs):
                    ray.options = kwargs
                    return self

            return Remote()

    spec = grid_spec(tmp_path / "x.db")
    ray = FakeRay()
    _Run(ray, spec, _prepare(spec), workers=2, cpus=4, gpus=0.5, runtime_env=None,
         max_task_retries=3, on_progress=None, poll_s=1.0)
    assert (ray.options["num_cpus"], ray.options["num_gpus"]) == (4, 0.5)


def test_the_ray_executor_passes_gpus_per_trial_and_workers(tmp_path, monkeypatch):
    from staytuned.search.executors import make_executor
    from staytuned.search.executors import ray as ray_executor

    seen: dict = {}

    def fake_run(spec, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(ray_executor, "run_study_on_ray", fake_run)
    for gpus, workers, n_workers in ((2, "auto", None), (None, 3, 3)):
        with pytest.raises(RuntimeError, match="stop here"):
            make_executor("ray", gpus_per_trial=gpus).run(grid_spec(tmp_path / "x.db"),
                                                          workers=workers)
        assert (seen["gpus_per_trial"], seen["n_workers"]) == (gpus, n_workers)
    assert make_executor("ray", gpus_per_trial=1).describe("auto") == (
        "as many Ray worker(s) on a local Ray, 1 CPU + 1 GPU per trial")
