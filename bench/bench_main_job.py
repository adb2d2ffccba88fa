"""The README's main job, timed: a 3-trial cbs+tpe study fine-tuning SmolLM2-135M with LoRA on
100 SST-2 rows (`staytuned tune ... --trials 3 --train-size 100 --eval-size 100`).

Runs the command exactly as the README's first line does (after bootstrap), in a fresh folder,
and records its wall time, the peak RSS of the process and the best validation accuracy.
Writes bench/results/main_job.json. Run it on an idle machine.

    .venv/bin/python bench/bench_main_job.py
"""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARGS = ["tune", "--task", "sst2", "--model", "smollm2-135m", "--space", "preset:demo", "--strategy", "cbs+tpe",
        "--trials", "3", "--train-size", "100", "--eval-size", "100"]


def main() -> None:
    exe = REPO / ".venv" / "bin" / "staytuned"
    with tempfile.TemporaryDirectory() as work:
        start = time.perf_counter()
        proc = subprocess.run([str(exe), *ARGS, "-q", "--json", "out.json"], cwd=work, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"the main job failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
        best = json.loads((Path(work) / "out.json").read_text())["best"]
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
    result = {
        "date": date.today().isoformat(), "machine": platform.machine(), "command": "staytuned " + " ".join(ARGS),
        "wall_s": round(wall, 1), "peak_rss_mb": round(peak_mb), "best_score": best["score"],
        "best_config": best["config"],
    }
    print(json.dumps(result, indent=2))
    (REPO / "bench" / "results" / "main_job.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
