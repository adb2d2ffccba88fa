"""Shared builders for the distributed tests (imported by the test modules, not by Ray workers)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from staytuned.search.objective import TrialSettings
from staytuned.search.storage import HeartbeatSettings, normalize_url
from staytuned.search.study import Cell, GridSpec

HERE = Path(__file__).resolve().parent

# 2 x 2 = 4 configs per cell, 1 epoch: small enough for a few seconds per grid on 2 cores.
SPACE: dict[str, Any] = {
    "name": "raytest", "kind": "train",
    "params": {"learning_rate": {"type": "float", "values": [1.0e-4, 1.0e-3]},
               "lr_scheduler": {"type": "categorical", "choices": ["linear", "cosine"]}},
    "fixed": {"epochs": 1, "batch_size": 4, "max_seq_length": 64},
}
SYNTHETIC = "staytuned.search.synthetic:synthetic_trial"
PID_TRIAL = "st_ray_trials:pid_trial"  # tests/distributed/st_ray_trials.py (workers' PYTHONPATH)
# Fast heartbeats so a killed worker's trial is failed and re-run within seconds.
FAST_HEARTBEAT = HeartbeatSettings(interval=1, grace_period=5, max_retry=2)


def grid_spec(storage: str | Path, *, trial_fn: str = SYNTHETIC, name: str = "g",
              cells: tuple[Cell, ...] | None = None, settings: TrialSettings | None = None,
              space: dict[str, Any] | None = None) -> GridSpec:
    return GridSpec(
        storage=f"sqlite:///{storage}" if isinstance(storage, Path) else storage,
        name=name,
        cells=cells or (Cell("sst2", "tiny-llama", "lora", 16),
                        Cell("trec", "tiny-llama", "lora", 16)),
        space=space or SPACE,
        settings=settings or TrialSettings(eval_size=16, seed=0),
        trial_fn=trial_fn,
        heartbeat=FAST_HEARTBEAT,
    )


def grid_results(spec: GridSpec) -> dict[tuple[str, str], tuple[str, float | None]]:
    """(cell, config_id) -> (state, value) of the finished trials, over every cell study."""
    import optuna
    from optuna.trial import TrialState

    out: dict[tuple[str, str], tuple[str, float | None]] = {}
    for cell in spec.cells:
        study = optuna.load_study(study_name=spec.cell_spec(cell).study_name,
                                  storage=normalize_url(spec.storage))
        for t in study.get_trials(deepcopy=False):
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
                    t.state == TrialState.FAIL and "status" in t.user_attrs):
                key = (cell.key, t.user_attrs["config_id"])
                assert key not in out, f"config {key} finished twice"
                out[key] = (t.state.name, t.value)
    return out


def all_trials(spec: GridSpec) -> list[Any]:
    import optuna

    trials = []
    for cell in spec.cells:
        study = optuna.load_study(study_name=spec.cell_spec(cell).study_name,
                                  storage=normalize_url(spec.storage))
        trials += study.get_trials(deepcopy=True)
    return trials


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for Ray worker processes: the helper trial module importable, caches isolated."""
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
           "STAYTUNED_CACHE": os.environ.get("STAYTUNED_CACHE", ""),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.update(extra or {})
    return {k: v for k, v in env.items() if v}
