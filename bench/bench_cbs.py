"""Benchmark of Coverage-based Search (not a test): ranking and leave-one-out evaluation speed.

    .venv/bin/python bench/bench_cbs.py [--quick]

Synthetic scores: config quality + per-dataset noise (so coverage is neither trivial nor empty).
Prints a table and writes bench/results/cbs.json. Targets on a 2-core machine: ranking
10,000 configs x 1,000 datasets <= 5 s; leave-one-out evaluation on 2,000 x 200 <= 60 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from staytuned.cbs import evaluate, rank  # noqa: E402
from staytuned.results import ColumnSpec, ScoreMatrix, load_results  # noqa: E402


def synthetic(n: int, m: int, seed: int = 0, missing: float = 0.0) -> ScoreMatrix:
    rng = np.random.default_rng(seed)
    quality = rng.normal(0.6, 0.1, size=(n, 1))
    affinity = rng.normal(0, 0.08, size=(n, m))  # config x dataset interaction
    scores = np.clip(quality + affinity + rng.normal(0, 0.1, size=(1, m)), 0, 1)
    if missing:
        scores[rng.random((n, m)) < missing] = np.nan
    return ScoreMatrix.from_dense(scores)


def timed(fn, repeats: int = 1):  # type: ignore[no-untyped-def]
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "cbs.json"))
    args = ap.parse_args()
    scale = 10 if args.quick else 1
    rows = []

    def record(name: str, seconds: float, target: float | None, detail: str) -> None:
        rows.append({"case": name, "seconds": round(seconds, 3), "target_s": target,
                     "ok": None if target is None else seconds <= target, "detail": detail})
        print(f"{name:<58} {seconds:8.2f} s   target {'-' if target is None else f'<= {target:g} s':>9}   {detail}",
              flush=True)

    n, m = 10_000 // scale, 1_000 // scale
    mat = synthetic(n, m, seed=0)
    sec, r = timed(lambda: rank(mat, tol=0.01), repeats=3)
    rounds = r.steps[-1].round
    record(f"rank {n:,} x {m:,} (all {n:,} ranks)", sec, 5.0,
           f"{rounds} rounds; top-10 coverage {r.steps[9].coverage:.2f}")
    sec, r = timed(lambda: rank(mat, tol=0.01, k=10), repeats=3)
    record(f"rank {n:,} x {m:,} (top 10)", sec, None, f"coverage {r.steps[-1].coverage:.2f}")
    tied = ScoreMatrix.from_dense(np.full((n, m), 0.5))
    sec, r = timed(lambda: rank(tied, tol=0.01), repeats=1)
    record(f"rank {n:,} x {m:,}, all configs tied (worst case)", sec, None, f"{r.steps[-1].round:,} rounds")
    mat_missing = synthetic(n, m, seed=1, missing=0.2)
    sec, _ = timed(lambda: rank(mat_missing, tol=0.01), repeats=1)
    record(f"rank {n:,} x {m:,}, 20% missing cells", sec, None, "")

    n, m = 2_000 // scale, 200 // scale
    mat = synthetic(n, m, seed=2)
    sec, ev = timed(lambda: evaluate(mat, k=10))
    c = ev.methods
    record(f"leave-one-out {n:,} x {m:,}, K=10", sec, 60.0,
           f"best-of-10 cbs {c['cbs'].mean_best_of_k[-1]:.3f} / best-avg {c['best-average'].mean_best_of_k[-1]:.3f}"
           f" / random {c['random'].mean_best_of_k[-1]:.3f}")
    sec, ev = timed(lambda: evaluate(mat, k=n))
    record(f"leave-one-out {n:,} x {m:,}, K={n:,} (full rankings)", sec, 60.0, "")
    sec, _ = timed(lambda: evaluate(mat, k=10, random_perms=1000, seed=0))
    record(f"leave-one-out {n:,} x {m:,}, K=10, 1000 random perms", sec, None, "")

    # Reading a long table from disk: one row per run.
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "runs.csv"
        ci, di = np.meshgrid(np.arange(n), np.arange(m), indexing="ij")
        with path.open("w") as fh:
            fh.write("dataset,config_id,score\n")
            for a, b, s in zip(di.ravel(), ci.ravel(), mat.scores.ravel(), strict=True):
                fh.write(f"d{a},c{b},{s:.6f}\n")
        sec, _ = timed(lambda: load_results(path, ColumnSpec()).score_matrix())
        record(f"load CSV + score matrix, {n * m:,} rows", sec, None, "")

    meta = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "quick": args.quick,
        "results": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
