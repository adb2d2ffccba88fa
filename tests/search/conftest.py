"""Helpers shared by the search tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SYNTH = "staytuned.search.synthetic:synthetic_trial"
REPO = Path(__file__).resolve().parents[2]


def staytuned_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("staytuned")
    return [str(exe)] if exe.exists() else [sys.executable, "-c", "from staytuned.cli import main; main()"]


def spawn(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    full_env = {**os.environ, **(env or {})}
    return subprocess.Popen(staytuned_cmd() + args, cwd=cwd, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def demo_table(path: Path, n_datasets: int = 4) -> Path:
    """A small results table on the demo space's lora grid (8 configs): two clusters of datasets."""
    import csv

    from staytuned.search.space import config_id, load_space

    grid = load_space("preset:demo").grid({"method": "lora"})
    rows = []
    for d in range(n_datasets):
        for cfg in grid:
            # cluster 0 likes high learning rates, cluster 1 low ones; lora_r breaks ties
            good_lr = 1e-3 if d % 2 == 0 else 2e-4
            score = 0.8 - (0.1 if cfg["learning_rate"] != good_lr else 0.0) \
                - (0.02 if cfg["lr_scheduler"] == "constant" else 0.0) - 0.001 * (cfg["lora_r"] == 8) \
                + 0.0001 * d
            rows.append({"dataset": f"d{d}", "config_id": config_id(cfg), "model": "m",
                         "method": "lora", **{f"hp_{k}": v for k, v in cfg.items()},
                         "metric": "accuracy", "score": round(score, 6), "status": "ok"})
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path
