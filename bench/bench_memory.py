"""Memory of a worker across trials: RSS between trials and each trial's peak, with and without
giving freed heap pages back to the OS after a trial (``release_memory`` -> ``malloc_trim``).

Each mode runs in a fresh process: LoRA, full, LoRA, full trials of SmolLM2-135M on one task
(bf16, max_seq_length 512, 1 epoch, batch 8), one torch thread, the model loaded once. Writes
bench/results/memory.json. Run it on an idle machine.

    .venv/bin/python bench/bench_memory.py [--task sst2] [--train-size 100]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = [("lora", 1e-3), ("full", 1e-4), ("lora", 1e-3), ("full", 1e-4)]

CHILD = r"""
import json, sys
import torch
torch.set_num_threads(1)
import staytuned.finetune.memory as memory
from staytuned.finetune.trial import ModelCache, run_trial
task, size, trim, configs = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "trim", json.loads(sys.argv[4])
if not trim:
    memory.trim_heap = lambda: False  # release_memory looks it up at call time
cache = ModelCache(device="cpu")
cache.get("smollm2-135m")
rows = [{"loaded_rss_mb": memory.current_rss_mb()}]
for method, lr in configs:
    cfg = {"method": method, "learning_rate": lr, "epochs": 1, "batch_size": 8, "max_seq_length": 512,
           "precision": "bf16"}
    r = run_trial("smollm2-135m", task, cfg, train_size=size, eval_size=100, model_cache=cache)
    assert r.status == "ok", r.error
    rows.append({"method": method, "peak_mb": r.peak_memory_mb, "rss_after_mb": memory.current_rss_mb(),
                 "train_tokens_per_s": r.train_tokens_per_s, "runtime_s": r.runtime_s, "score": r.score})
print(json.dumps(rows))
"""


def run_mode(task: str, size: int, mode: str) -> list[dict]:
    proc = subprocess.run([sys.executable, "-c", CHILD, task, str(size), mode, json.dumps(CONFIGS)],
                          capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        sys.exit(f"{mode} run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="sst2")
    ap.add_argument("--train-size", type=int, default=100)
    args = ap.parse_args()
    modes = {mode: run_mode(args.task, args.train_size, mode) for mode in ("keep", "trim")}
    print(f"{'mode':5} {'trial':6} {'peak MB':>8} {'RSS after MB':>13} {'tok/s':>6} {'s':>5}")
    for mode, rows in modes.items():
        print(f"{mode:5} loaded {'':>8} {rows[0]['loaded_rss_mb']:13.0f}")
        for r in rows[1:]:
            print(f"{mode:5} {r['method']:6} {r['peak_mb']:8.0f} {r['rss_after_mb']:13.0f} "
                  f"{r['train_tokens_per_s']:6.0f} {r['runtime_s']:5.0f}")
    result = {"date": date.today().isoformat(), "machine": platform.machine(), "task": args.task,
              "train_size": args.train_size, "modes": modes}
    out = REPO / "bench" / "results" / "memory.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
