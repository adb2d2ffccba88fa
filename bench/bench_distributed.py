"""Benchmark: the same grid in-process and on a local Ray with 1, 2 and 4 workers.

Two workloads:

* ``synthetic-sleep``: 16 synthetic trials that each wait 1 s (``STAYTUNED_SYNTHETIC_SLEEP``),
  like a trial whose time is spent on a GPU or on I/O, so that parallel workers can overlap
  even on a 2-core machine;
* ``tiny-llama``: 4 real LoRA trials on the tiny-llama model (16 train / 16 eval rows of sst2).
  They are CPU-bound, so on 2 cores Ray can give at most 2x.

``wall_s`` is the whole call: for Ray it includes starting and stopping the local Ray
(``address=None``) and the start of fresh worker processes (Python, Optuna, torch imports).
``trials_s`` is the trial phase alone: first trial start to last trial end, from the storage's
timestamps. The in-process baseline runs after a warm-up trial (torch imported, tiny model
cached, one torch thread like a Ray worker), so it pays no start-up at all. Prints a table and
writes ``bench/results/distributed.json``.

    .venv/bin/python bench/bench_distributed.py
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from staytuned.search.executors.ray import run_study_on_ray
from staytuned.search.objective import TrialSettings
from staytuned.search.storage import HeartbeatSettings
from staytuned.search.study import Cell, GridSpec, run_grid_worker

OUT = Path(__file__).resolve().parent / "results" / "distributed.json"
SLEEP_SPACE = {
    "name": "bench", "kind": "train",
    "params": {"learning_rate": {"type": "float",
                                 "values": [1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3]},
               "lr_scheduler": {"type": "categorical", "choices": ["linear", "cosine"]}},
    "fixed": {"epochs": 1},
}
TINY_SPACE = {
    "name": "bench-tiny", "kind": "train",
    "params": {"learning_rate": {"type": "float", "values": [1e-4, 1e-3]},
               "lr_scheduler": {"type": "categorical", "choices": ["linear", "cosine"]}},
    "fixed": {"epochs": 1, "batch_size": 4, "max_seq_length": 64},
}
WORKLOADS = {
    "synthetic-sleep": (SLEEP_SPACE, "staytuned.search.synthetic:synthetic_trial"),
    "tiny-llama": (TINY_SPACE, "staytuned.finetune:run_trial"),
}


def spec(folder: Path, name: str, workload: str) -> GridSpec:
    space, trial_fn = WORKLOADS[workload]
    return GridSpec(storage=f"sqlite:///{folder / name}.db", name=name,
                    cells=(Cell("sst2", "tiny-llama", "lora", 16),), space=space,
                    settings=TrialSettings(eval_size=16, seed=0), trial_fn=trial_fn,
                    heartbeat=HeartbeatSettings(interval=2, grace_period=6))


def trial_phase_seconds(spec_: GridSpec) -> float:
    import optuna

    trials = []
    for cell in spec_.cells:
        study = optuna.load_study(study_name=spec_.cell_spec(cell).study_name,
                                  storage=spec_.storage)
        trials += [t for t in study.get_trials(deepcopy=False) if t.datetime_complete]
    start = min(t.datetime_start for t in trials)
    return (max(t.datetime_complete for t in trials) - start).total_seconds()


def warm_up() -> None:
    import torch

    from staytuned.finetune import run_trial

    # One thread, as in the Ray workers (Ray sets OMP_NUM_THREADS to the task's CPUs): on a
    # loaded 2-core machine 2 torch threads per trial were 6x slower, which is not Ray's doing.
    torch.set_num_threads(1)

    run_trial(model="tiny-llama", task="sst2", config={"epochs": 1, "batch_size": 4,
              "max_seq_length": 64}, train_size=8, eval_size=8, seed=0)


def ray_start_seconds() -> float:
    import ray

    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2,
             log_to_driver=False, logging_level="ERROR")
    ray.get(ray.remote(lambda: 1).remote())  # a first task: a worker process is up
    took = time.perf_counter() - start
    ray.shutdown()
    return took


def main() -> None:
    os.environ["STAYTUNED_SYNTHETIC_SLEEP"] = "1.0"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.environ.setdefault("STAYTUNED_CACHE", str(folder / "cache"))
        env = {"env_vars": {k: os.environ[k] for k in
                            ("STAYTUNED_SYNTHETIC_SLEEP", "STAYTUNED_CACHE", "HF_HUB_OFFLINE")}}
        startup = ray_start_seconds()
        warm_up()
        for workload in WORKLOADS:
            s = spec(folder, f"{workload}-local", workload)
            start = time.perf_counter()
            n = run_grid_worker(s)
            base = time.perf_counter() - start
            base_trials = trial_phase_seconds(s)
            rows.append({"workload": workload, "backend": "in-process", "workers": 1,
                         "cpus_per_trial": None, "trials": n, "wall_s": round(base, 2),
                         "trials_s": round(base_trials, 2), "trials_speedup": 1.0,
                         "worker_failures": 0})
            for workers, cpus in ((1, 1.0), (2, 1.0), (4, 0.5)):
                s = spec(folder, f"{workload}-ray{workers}", workload)
                start = time.perf_counter()
                summary = run_study_on_ray(s, n_workers=workers, cpus_per_trial=cpus,
                                           local_cpus=2, runtime_env=env)
                wall = time.perf_counter() - start
                phase = trial_phase_seconds(s)
                rows.append({"workload": workload, "backend": "ray (local)", "workers": workers,
                             "cpus_per_trial": cpus, "trials": summary.counts["complete"],
                             "wall_s": round(wall, 2), "trials_s": round(phase, 2),
                             "trials_speedup": round(base_trials / phase, 2),
                             "worker_failures": len(summary.worker_failures)})
    print(f"local Ray start (ray.init + first task): {startup:.1f} s")
    print(f"{'workload':<16} {'backend':<12} {'workers':>7} {'cpu/trial':>9} {'trials':>6} "
          f"{'wall s':>7} {'trials s':>8} {'speedup':>7}")
    for r in rows:
        cpus = "-" if r["cpus_per_trial"] is None else f"{r['cpus_per_trial']:g}"
        print(f"{r['workload']:<16} {r['backend']:<12} {r['workers']:>7} {cpus:>9} "
              f"{r['trials']:>6} {r['wall_s']:>7.1f} {r['trials_s']:>8.1f} "
              f"{r['trials_speedup']:>7.2f}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()}-core {platform.machine()} CPU, no GPU, shared",
        "python": platform.python_version(), "ray_start_s": round(startup, 2),
        "note": "wall_s includes starting/stopping a local Ray and fresh worker processes; "
                "trials_s = first trial start to last trial end; speedup is on trials_s; "
                "synthetic trials sleep 1 s",
        "rows": rows}, indent=2) + "\n")
    print(f"written {OUT}")


if __name__ == "__main__":
    main()
