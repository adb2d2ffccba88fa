"""The README's main job, timed: a 3-trial cbs+tpe study fine-tuning SmolLM2-135M with LoRA on
100 SST-2 rows, after scoring the untuned model on the same 100 validation rows.

Runs the command exactly as the README's first line does (after bootstrap) in a fresh folder,
once per seed (``--seed`` picks the training and validation rows and seeds the sampler), with the
untuned score's cache cleared so every run pays for it. Records wall time, peak RSS, the untuned
and best accuracy, and the precision ``auto`` chose. ``--precision fp32`` emulates a CPU without
native bf16 (where ``auto`` picks fp32) on one that has it; ``--isa avx2`` goes further and makes
torch, oneDNN and MKL use their AVX2 kernels only (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA,
MKL_ENABLE_INSTRUCTIONS), so ``auto`` probes and picks as on an AVX2-only CPU. That is the
instruction set of such a CPU on this one's cores, clock and caches, not a measurement of one.
The GGUF conversion is done by the setup script and stays cached. Writes
bench/results/main_job.json (or --out). Run it on an idle machine: two trainings at once on 2
cores run many times slower.

    .venv/bin/python bench/bench_main_job.py [--seeds 0,1,2] [--precision auto|fp32] [--isa avx2]
        [--job-args "tune ..."]   (a repeated measurement keeps the earlier ones under "earlier")
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARGS = ["tune", "--task", "sst2", "--model", "smollm2-135m", "--space", "preset:demo", "--strategy", "cbs+tpe",
        "--trials", "3", "--train-size", "100", "--eval-size", "100"]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            have = set(line.split(":", 1)[1].split())
            return [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in have]
    return []


#: --isa avx2: the kernels an AVX2-only CPU gets.
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def run_once(seed: int, precision: str | None, isa: str | None = None,
             job: list[str] | None = None) -> dict[str, object]:
    exe = REPO / ".venv" / "bin" / "staytuned"
    cache = Path(os.environ.get("STAYTUNED_CACHE", REPO / ".staytuned-cache"))
    shutil.rmtree(cache / "untuned", ignore_errors=True)  # every run scores the untuned model
    extra = ["--seed", str(seed)] if seed else []
    extra += ["--precision", precision] if precision else []
    with tempfile.TemporaryDirectory() as work:
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        start = time.perf_counter()
        proc = subprocess.run([str(exe), *(job or ARGS), *extra, "-q", "--json", "out.json"], cwd=work,
                              capture_output=True, text=True, env={**os.environ, "STAYTUNED_CACHE": str(cache),
                                                          **(AVX2_ENV if isa == "avx2" else {})})
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"the main job failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
        out = json.loads((Path(work) / "out.json").read_text())
    peak_mb = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    best, untuned = out["best"], out["untuned"]
    return {"seed": seed, "wall_s": round(wall, 1), "peak_rss_mb": round(peak_mb),
            "untuned": untuned["score"], "best": best["score"],
            "gain_points": round((best["score"] - untuned["score"]) * 100, 1),
            "best_config": best["config"], "precision_requested": precision or "auto"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--precision", default=None, help="pass --precision to the job (default: auto)")
    ap.add_argument("--isa", choices=["native", "avx2"], default="native",
                    help="avx2: torch/oneDNN/MKL restricted to AVX2 kernels (see the docstring)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "main_job.json")
    ap.add_argument("--job-args", default=None,
                    help="replace the job's arguments after 'staytuned' (to try another demo; keyed apart)")
    args = ap.parse_args()
    job = args.job_args.split() if args.job_args else ARGS
    runs = []
    for seed in (int(s) for s in args.seeds.split(",")):
        run = run_once(seed, args.precision, args.isa, job)
        print(json.dumps(run), flush=True)
        runs.append(run)
    result = {"date": date.today().isoformat(), "cpu": cpu_model(), "cpu_flags": cpu_flags(),
              "cores": os.cpu_count(), "command": "staytuned " + " ".join(job),
              "precision": args.precision or "auto", "isa": args.isa, "runs": runs,
              "max_wall_s": max(r["wall_s"] for r in runs),
              "min_gain_points": min(r["gain_points"] for r in runs)}
    existing = json.loads(args.out.read_text()) if args.out.is_file() else {}
    existing = existing if isinstance(existing, dict) and "by_precision" in existing else {"by_precision": {}}
    key = str(result["precision"]) + ("" if args.isa == "native" else f"+{args.isa}")
    key += "" if job == ARGS else f" [{' '.join(job)}]"
    previous = existing["by_precision"].get(key)
    if previous:  # keep every measurement: run-to-run spread is part of the figure
        result["earlier"] = [*previous.pop("earlier", []), previous]
    existing["by_precision"][key] = result
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(existing, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
