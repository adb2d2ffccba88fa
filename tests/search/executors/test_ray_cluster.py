"""A real multi-process Ray cluster on this machine: `ray start --head` + one `ray start` worker
node. Grids and a pruned study run through ``address=``; a worker is killed with SIGKILL mid-trial.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from st_ray_helpers import PID_TRIAL, all_trials, grid_results, grid_spec, worker_env

from staytuned.search.executors.ray import run_study_on_ray
from staytuned.search.objective import TrialSettings
from staytuned.search.study import StudySpec, run_grid_worker

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_grid_through_address_runs_on_both_nodes_and_matches_local(ray_cluster, tmp_path):
    local = grid_spec(tmp_path / "local.db")
    assert run_grid_worker(local) == 8  # the same grid in this process, no Ray

    pids = tmp_path / "pids"
    pids.mkdir()
    spec = grid_spec(tmp_path / "ray.db", trial_fn=PID_TRIAL)
    summary = run_study_on_ray(spec, address=ray_cluster.address, cpus_per_trial=1,
                               runtime_env={"env_vars": worker_env({"ST_TEST_PIDDIR": str(pids),
                                                                    "ST_TEST_MIN_PIDS": "2"})})

    assert summary.nodes == 2 and summary.cluster_cpus == 2.0
    assert summary.workers == 2  # one 1-CPU trial fits on each node
    assert summary.counts["complete"] == 8 and summary.counts["running"] == 0
    assert summary.done and summary.total == 8
    assert summary.address == ray_cluster.address
    # both nodes ran trials (each node has one CPU, so each holds one worker)
    assert len(summary.trials_per_node) == 2, summary.trials_per_node
    assert all(n >= 1 for n in summary.trials_per_node.values())
    assert sum(summary.trials_per_node.values()) >= 8
    ran_in = {t.user_attrs["metrics"]["pid"] for t in all_trials(spec)}
    assert len(ran_in) == 2
    # identical content: same configs, same states, same scores as the local run
    assert grid_results(spec) == grid_results(local)


def _kill_victim_when_it_starts(folder: Path, killed: list[tuple[int, str]],
                                stop: threading.Event) -> None:
    import psutil

    path = folder / "victim.pid"
    while not stop.is_set():
        if path.exists():
            pid = int(path.read_text())
            name = psutil.Process(pid).name()
            os.kill(pid, signal.SIGKILL)  # the Ray worker process running the trial
            (folder / "killed").touch()  # the re-run goes through
            killed.append((pid, name))
            return
        time.sleep(0.05)


@pytest.fixture(params=[pytest.param("postgresql", marks=pytest.mark.postgres), "sqlite"])
def shared_storage(request, tmp_path):
    """PostgreSQL (the cluster setup; skipped without the server binaries) and a SQLite file
    (fine while every node is this machine)."""
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'kill.db'}"


def test_worker_killed_mid_trial_is_rerun_and_nothing_is_lost(ray_cluster, tmp_path,
                                                              shared_storage):
    local = grid_spec(tmp_path / "local.db")
    run_grid_worker(local)

    pids = tmp_path / "pids"
    pids.mkdir()
    spec = grid_spec(shared_storage, trial_fn=PID_TRIAL, name="kill")
    env = worker_env({"ST_TEST_PIDDIR": str(pids), "ST_TEST_VICTIM_LR": "0.001",
                      "ST_TEST_VICTIM_SCHED": "cosine"})
    killed: list[tuple[int, str]] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_victim_when_it_starts, args=(pids, killed, stop))
    killer.start()
    try:
        summary = run_study_on_ray(spec, address=ray_cluster.address,
                                   runtime_env={"env_vars": env})
    finally:
        stop.set()
        killer.join()

    assert len(killed) == 1  # the victim started and was killed (in one of the two cells)
    assert killed[0][1].startswith("ray::")  # a Ray worker process, not a daemon or the driver
    trials = all_trials(spec)
    failed = [t for t in trials if t.state.name == "FAIL"]
    # exactly one trial lost its worker: failed by the heartbeat check, not by itself ...
    assert len(failed) == 1 and "status" not in failed[0].user_attrs
    dead = failed[0]
    assert dead.params == {"learning_rate": 0.001, "lr_scheduler": "cosine"}
    # ... and run again once, with the same params, to completion
    retries = [t for t in trials if t.system_attrs.get("failed_trial") is not None]
    assert len(retries) == 1
    assert retries[0].system_attrs["failed_trial"] == dead.number
    assert retries[0].params == dead.params and retries[0].state.name == "COMPLETE"
    assert retries[0].user_attrs["metrics"]["pid"] != killed[0][0]
    # nothing lost, nothing doubled: 8 grid points complete, each once, same scores as locally
    assert summary.counts == {"finished": 8, "complete": 8, "failed": 0, "pruned": 0,
                              "running": 0, "waiting": 0}
    assert summary.retried == 1 and summary.worker_failures == []  # Ray restarted the worker
    assert len(trials) == 9  # 8 grid points + the killed attempt
    assert grid_results(spec) == grid_results(local)
    attempts = sorted(p.name.split("_")[1] for p in pids.glob("attempt_*"))
    victim_attempts = [a for a in attempts if a == "0.001-cosine"]
    assert len(victim_attempts) == 3  # killed attempt + re-run in its cell, + the other cell
    # claims are atomic (PostgreSQL row locks; SQLite BEGIN IMMEDIATE): every other grid point
    # ran exactly once
    assert len(attempts) == 8 + 1


def test_median_pruner_prunes_with_values_from_other_nodes(ray_cluster, tmp_path):
    import optuna

    pids = tmp_path / "pids"
    pids.mkdir()
    space = {"name": "prune", "kind": "train",
             "params": {"learning_rate": {"type": "float",
                                          "values": [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3]},
                        "lr_scheduler": {"type": "categorical", "choices": ["linear", "cosine"]}},
             "fixed": {"epochs": 3}}
    spec = StudySpec(storage=f"sqlite:///{tmp_path / 'prune.db'}", study_name="prune",
                     task="sst2", model="tiny-llama", space=space, strategy="grid", n_trials=12,
                     pruner="median", seed=3, trial_fn=PID_TRIAL,
                     settings=TrialSettings(eval_size=8),
                     heartbeat=grid_spec(tmp_path / "x.db").heartbeat)
    # 0.3 s per epoch: trials of the two nodes overlap in time
    env = worker_env({"ST_TEST_PIDDIR": str(pids), "STAYTUNED_SYNTHETIC_SLEEP": "0.3",
                      "ST_TEST_MIN_PIDS": "2"})
    summary = run_study_on_ray(spec, address=ray_cluster.address, runtime_env={"env_vars": env})
    assert summary.done and summary.counts["finished"] == 12

    study = optuna.load_study(study_name="prune", storage=spec.storage)
    trials = study.get_trials(deepcopy=False)
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert pruned, "the median pruner never fired"
    assert len({t.user_attrs["metrics"]["pid"] for t in trials}) == 2  # both nodes ran trials
    used_other_node = 0
    for t in pruned:
        step = max(t.intermediate_values)
        before = [c for c in complete if c.datetime_complete < t.datetime_complete
                  and step in c.intermediate_values]
        assert len(before) >= 2  # n_startup_trials of make_pruner("median")
        median = sorted(c.intermediate_values[step] for c in before)
        mid = len(median) // 2
        med = median[mid] if len(median) % 2 else (median[mid - 1] + median[mid]) / 2
        # each prune is the storage-wide median rule: below the median of completed trials
        assert t.intermediate_values[step] < med + 1e-12
        pid = t.user_attrs["metrics"]["pid"]
        others = [c for c in before if c.user_attrs["metrics"]["pid"] != pid]
        used_other_node += bool(others)
    # at least one decision saw trials that ran on the other node (only the storage shares them)
    assert used_other_node >= 1
    assert all(math.isfinite(t.value) for t in complete)
