"""The native loop and the trl trainer (TRL's SFTTrainer) on the same trials: SmolLM2-135M, LoRA,
100 bundled TREC training rows, 100 validation rows, the same config with config.seed 0, 1, 2
(the rows are the same: data seed 0), one process, one cached model, trainers alternating.

Reports each trainer's scores, mean, spread (sample std and min-max) and training tokens per
second (non-pad prompt + target tokens per second of training, the same definition for both),
and the trl/native ratio of the mean tokens/s measured in this run: on a shared machine absolute
tokens/s move with the other processes' load, the ratio of interleaved runs much less.

Run: nice -n 5 .venv/bin/python bench/bench_trainers.py [--eval-size 100] [--threads 1]
Writes bench/results/trainers.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: The config of the SmolLM2 real tests (and the README's QLoRA figure): one epoch keeps the six
#: trials to minutes on a 2-core CPU.
CONFIG = {"method": "lora", "learning_rate": 2e-3, "epochs": 1, "batch_size": 8, "max_seq_length": 128,
          "lora_r": 8, "lora_alpha": 16}


def cpu_info() -> dict[str, object]:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        lscpu = ""
    model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), "")
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    return {"model_name": model, "avx512_bf16": "avx512_bf16" in flags, "cpus": os.cpu_count()}


def summary(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="trec")
    ap.add_argument("--train-size", type=int, default=100)
    ap.add_argument("--eval-size", type=int, default=100)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: the machine is shared)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "trainers.json")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    import torch

    from staytuned.finetune.trial import ModelCache, run_trial

    if args.threads:
        torch.set_num_threads(args.threads)
    cache = ModelCache(device="cpu")
    cache.get("smollm2-135m")  # loaded once, outside the timings
    load_before = os.getloadavg()
    runs: list[dict[str, object]] = []
    started = time.perf_counter()
    for i, seed in enumerate(args.seeds):
        order = ("native", "trl") if i % 2 == 0 else ("trl", "native")  # alternate: load drifts
        for trainer in order:
            options = {"distributed": "none"} if trainer == "trl" else None
            r = run_trial("smollm2-135m", args.task, {**CONFIG, "seed": seed}, train_size=args.train_size,
                          eval_size=args.eval_size, seed=0, model_cache=cache, device="cpu", trainer=trainer,
                          trainer_options=options)
            row = {"trainer": trainer, "seed": seed, "status": r.status, "error": r.error, "score": r.score,
                   "steps": r.steps, "train_tokens": r.train_tokens, "train_runtime_s": r.train_runtime_s,
                   "train_tokens_per_s": r.train_tokens_per_s, "eval_runtime_s": r.eval_runtime_s,
                   "micro_batch_size": r.micro_batch_size, "grad_accumulation": r.grad_accumulation,
                   "precision": r.precision, "first_loss": r.loss_curve[0][1] if r.loss_curve else None,
                   "last_loss": r.loss_curve[-1][1] if r.loss_curve else None, "peak_memory_mb": r.peak_memory_mb}
            runs.append(row)
            print(json.dumps(row), flush=True)
    by: dict[str, dict[str, object]] = {}
    for trainer in ("native", "trl"):
        mine = [r for r in runs if r["trainer"] == trainer and r["status"] == "ok"]
        scores = [float(r["score"]) for r in mine]  # type: ignore[arg-type]
        speeds = [float(r["train_tokens_per_s"]) for r in mine]  # type: ignore[arg-type]
        by[trainer] = {"scores": scores, "score": summary(scores) if scores else None,
                       "train_tokens_per_s": summary(speeds) if speeds else None}
    native_speed, trl_speed = by["native"]["train_tokens_per_s"], by["trl"]["train_tokens_per_s"]
    ratio = (trl_speed["mean"] / native_speed["mean"]  # type: ignore[index]
             if native_speed and trl_speed else None)
    report = {
        "what": f"SmolLM2-135M LoRA on {args.train_size} {args.task} rows, {args.eval_size} validation rows, "
                f"config.seed {args.seeds}, native vs trl (SFTTrainer), one process, CPU",
        "config": CONFIG, "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_info(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "wall_s": time.perf_counter() - started,
        "note": "shared machine (other processes on the same cores): absolute tokens/s are contaminated; "
                "the trl/native ratio of interleaved runs is the figure to read",
        "native": by["native"], "trl": by["trl"], "tokens_per_s_ratio_trl_over_native": ratio,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: report[k] for k in ("native", "trl", "tokens_per_s_ratio_trl_over_native")}, indent=2))


if __name__ == "__main__":
    main()
