"""Benchmark of Coverage-based Search (not a test): ranking and leave-one-out evaluation speed.

    .venv/bin/python bench/bench_cbs.py [--quick]

Synthetic scores: config quality + per-dataset noise (so coverage is neither trivial nor empty).
Prints a table and writes bench/results/cbs.json. Targets on a 2-core machine: ranking
10,000 configs x 1,000 datasets <= 5 s; leave-one-out evaluation on 2,000 x 200 <= 60 s;
the portfolio rankers well under 1 s per added config on 2,000 x 500; ``staytuned cbs rank``
of a 2,000 x 500 CSV (1M rows) within 3x the time ``pandas.read_csv`` takes to read that file,
both measured here, interleaved, in the same run (wall clock of the whole command, Python
start-up included, against the ``read_csv`` call alone; and the same ratio in CPU seconds,
which a busy shared machine disturbs less).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from staytuned.cbs import evaluate, rank, rank_by  # noqa: E402
from staytuned.cli.cbs import SHOWN  # noqa: E402  (the ranks `cbs rank` computes without --k or --json)
from staytuned.results import ColumnSpec, ScoreMatrix, load_results  # noqa: E402


def synthetic(n: int, m: int, seed: int = 0, missing: float = 0.0) -> ScoreMatrix:
    rng = np.random.default_rng(seed)
    quality = rng.normal(0.6, 0.1, size=(n, 1))
    affinity = rng.normal(0, 0.08, size=(n, m))  # config x dataset interaction
    scores = np.clip(quality + affinity + rng.normal(0, 0.1, size=(1, m)), 0, 1)
    if missing:
        scores[rng.random((n, m)) < missing] = np.nan
    return ScoreMatrix.from_dense(scores)


def cpu_model() -> str:
    """lscpu's model name (platform.processor() is often empty on Linux)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def write_runs_csv(path: Path, mat: ScoreMatrix) -> None:
    """One row per run: dataset, config id, four HP columns, score (the issue's table)."""
    n, m = mat.shape
    lrs, bss, eps = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3), (8, 16, 32, 64), (1, 2, 3, 5)
    scheds = ("linear", "constant", "cosine")
    hp = [f"{lrs[i % 5]},{bss[(i // 5) % 4]},{eps[(i // 20) % 4]},{scheds[(i // 80) % 3]}" for i in range(n)]
    with path.open("w") as fh:
        fh.write("dataset,config_id,learning_rate,batch_size,epochs,lr_scheduler,score\n")
        for d in range(m):
            col = mat.scores[:, d]
            fh.write("".join(f"ds{d},c{c},{hp[c]},{col[c]:.6f}\n" for c in range(n)))


def cli_vs_read_csv(path: Path, repeats: int) -> dict[str, float]:
    """``staytuned cbs rank PATH`` (a subprocess, output discarded) against ``pd.read_csv(PATH)``
    in this process, interleaved so both see the same load; wall and CPU seconds, best of each.
    Also the command's work done in this process (``api_s``): what it costs without start-up;
    and a fresh ``python -c "import pandas; pandas.read_csv(PATH)"`` (``pandas_script_s``): reading
    the file with pandas, start-up included, as the command includes its own.

    The command runs as an installed one does: with its modules' bytecode cached (in a temp
    folder, so nothing lands in the checkout; PYTHONDONTWRITEBYTECODE would otherwise make it
    compile every module on every run), after one untimed warm-up run.
    """
    import pandas as pd

    exe = Path(sys.executable).with_name("staytuned")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "staytuned.cli"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(path.parent / "pycache")
    run = [*cmd, "cbs", "rank", str(path), "--quiet"]
    subprocess.run(run, stdout=subprocess.DEVNULL, check=True, env=env)  # warm-up: bytecode, page cache
    def api() -> None:  # the command's work without start-up and printing: read, matrix, first ranks
        rank_by(load_results(path).choose_matrix("auto")[0], "cbs", tol=0.01, k=SHOWN)

    api()
    # A fresh Python process that only reads the file with pandas: start-up paid, as the command pays
    # it; it also times its read_csv call alone: pandas reading the file once, in fresh memory as
    # the command reads it (the call above repeats in this process and reuses freed memory).
    script = [sys.executable, "-c", "import sys, time, pandas; t = time.perf_counter(); "
              f"pandas.read_csv({str(path)!r}); sys.stdout.write(repr(time.perf_counter() - t))"]
    # The floor of any Python command that reads the file with pyarrow: start-up, numpy and
    # pyarrow imported, the CSV parsed on every core; no validation, no ranking, no staytuned.
    # And that floor with the CLI stack the product is built on (Typer + Rich) imported as well.
    floor = [sys.executable, "-c", f"import numpy, pyarrow.csv; pyarrow.csv.read_csv({str(path)!r})"]
    cli_floor = [sys.executable, "-c", "import numpy, pyarrow.csv, typer, rich.table; "
                 f"pyarrow.csv.read_csv({str(path)!r})"]
    pd_wall, pd_cpu, cli_wall, cli_cpu, api_wall, script_wall, cold_read = [], [], [], [], [], [], []
    floor_wall, cli_floor_wall = [], []
    # What fresh memory costs on this machine: a command pays it for all its memory, the repeated
    # read_csv call above mostly reuses what its process freed.
    touch = [sys.executable, "-c", "import mmap, sys, time; n = 64 << 20; m = mmap.mmap(-1, n); "
             "t = time.perf_counter(); m[::4096] = bytes(n // 4096); "
             "sys.stdout.write(repr((time.perf_counter() - t) * 1000 / 64))"]
    ms_per_mb = min(float(subprocess.run(touch, check=True, capture_output=True, text=True).stdout)
                    for _ in range(3))
    for _ in range(repeats):
        for argv, walls in ((floor, floor_wall), (cli_floor, cli_floor_wall)):
            t0 = time.perf_counter()
            subprocess.run(argv, check=True, env=env)
            walls.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        cold = subprocess.run(script, check=True, env=env, capture_output=True, text=True).stdout
        script_wall.append(time.perf_counter() - t0)
        cold_read.append(float(cold))
        c0, t0 = time.process_time(), time.perf_counter()
        pd.read_csv(path)
        pd_wall.append(time.perf_counter() - t0)
        pd_cpu.append(time.process_time() - c0)
        t0 = time.perf_counter()
        api()
        api_wall.append(time.perf_counter() - t0)
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(run, stdout=subprocess.DEVNULL, check=True, env=env)
        cli_wall.append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cli_cpu.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    return {"read_csv_s": min(pd_wall), "cli_s": min(cli_wall), "ratio": min(cli_wall) / min(pd_wall),
            "read_csv_median_s": statistics.median(pd_wall), "cli_median_s": statistics.median(cli_wall),
            "ratio_median": statistics.median(cli_wall) / statistics.median(pd_wall),
            "read_csv_cpu_s": min(pd_cpu), "cli_cpu_s": min(cli_cpu), "cpu_ratio": min(cli_cpu) / min(pd_cpu),
            "api_s": min(api_wall), "api_ratio": min(api_wall) / min(pd_wall),
            "pandas_script_s": min(script_wall), "vs_pandas_script": min(cli_wall) / min(script_wall),
            "read_csv_fresh_s": min(cold_read), "vs_read_csv_fresh": min(cli_wall) / min(cold_read),
            "floor_s": min(floor_wall), "floor_ratio": min(floor_wall) / min(pd_wall),
            "cli_floor_s": min(cli_floor_wall), "cli_floor_ratio": min(cli_floor_wall) / min(pd_wall),
            "fresh_memory_ms_per_mb": ms_per_mb}


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def timed(fn, repeats: int = 1):  # type: ignore[no-untyped-def]
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def command_vs_pandas(tmp: Path, scale: int, repeats: int, record: Any, rows: list[dict[str, Any]]) -> None:
    """``staytuned cbs rank`` of a 1M-row CSV (2,000 configs x 500 datasets) against pandas."""
    n, m = 2_000 // scale, 500 // scale
    big = tmp / "runs_1m.csv"
    write_runs_csv(big, synthetic(n, m, seed=5))
    speed = cli_vs_read_csv(big, repeats=repeats)
    record(f"staytuned cbs rank, {n * m:,}-row CSV ({n:,} x {m:,})", speed["cli_s"], 3 * speed["read_csv_s"],
           f"{speed['ratio']:.2f}x pd.read_csv ({speed['read_csv_s']:.2f} s) wall, "
           f"{speed['cpu_ratio']:.2f}x in CPU s; medians {speed['ratio_median']:.2f}x")
    rows[-1]["vs_read_csv"] = {k: round(v, 3) for k, v in speed.items()}
    record(f"the same in one process (load_results, choose_matrix, rank_by k={SHOWN})",
           speed["api_s"], 3 * speed["read_csv_s"], f"{speed['api_ratio']:.2f}x pd.read_csv")
    record('a fresh `python -c "import pandas; pandas.read_csv(...)"`', speed["pandas_script_s"], None,
           f"the command takes {speed['vs_pandas_script']:.2f}x this")
    record("its pd.read_csv call alone (once, in that fresh process)", speed["read_csv_fresh_s"], None,
           f"the command takes {speed['vs_read_csv_fresh']:.2f}x this")
    record('floor: a fresh `python -c "import numpy, pyarrow.csv; pyarrow.csv.read_csv(...)"`',
           speed["floor_s"], None, f"{speed['floor_ratio']:.2f}x pd.read_csv: no command reading with "
           "these libraries can be faster")
    record("the same floor with typer and rich.table imported too", speed["cli_floor_s"], None,
           f"{speed['cli_floor_ratio']:.2f}x pd.read_csv")
    print(f"fresh memory: {speed['fresh_memory_ms_per_mb']:.2f} ms per MB (first touch of 64 MB, best of 3)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "cbs.json"))
    ap.add_argument("--only-command", action="store_true",
                    help="only `staytuned cbs rank` against pandas (prints, writes no file)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="runs of each command-vs-pandas case (best taken; default 5, 2 with --quick)")
    args = ap.parse_args()
    scale = 10 if args.quick else 1
    repeats = args.repeats or (2 if args.quick else 5)  # of the command-vs-pandas cases
    rows = []

    def record(name: str, seconds: float, target: float | None, detail: str) -> None:
        rows.append({"case": name, "seconds": round(seconds, 3), "target_s": target,
                     "ok": None if target is None else seconds <= target, "detail": detail})
        print(f"{name:<58} {seconds:8.2f} s   target {'-' if target is None else f'<= {target:g} s':>9}   {detail}",
              flush=True)

    if args.only_command:
        with tempfile.TemporaryDirectory() as tmp:
            command_vs_pandas(Path(tmp), scale, repeats=repeats, record=record, rows=rows)
        return

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

    # Portfolio rankers: the greedy loops, per added config.
    n, m = 2_000 // scale, 500 // scale
    mat = synthetic(n, m, seed=3)
    for method in ("zeroshot", "greedy-portfolio", "best-average"):
        sec, r = timed(lambda method=method: rank_by(mat, method, k=10), repeats=3)
        record(f"{method} {n:,} x {m:,} (top 10)", sec, None, f"{sec / 10 * 1000:.0f} ms per added config")
        sec, r = timed(lambda method=method: rank_by(mat, method), repeats=1)
        record(f"{method} {n:,} x {m:,} (all {n:,} ranks)", sec, None,
               f"{r.steps[-1].round} rounds; {sec / n * 1000:.2f} ms per added config")

    n, m = 2_000 // scale, 200 // scale
    mat = synthetic(n, m, seed=2)
    base = ("cbs", "best-average", "random", "oracle")  # the methods of the earlier figures
    sec, ev = timed(lambda: evaluate(mat, k=10, methods=base))
    c = ev.methods
    record(f"leave-one-out {n:,} x {m:,}, K=10", sec, 60.0,
           f"best-of-10 cbs {c['cbs'].mean_best_of_k[-1]:.3f} / best-avg {c['best-average'].mean_best_of_k[-1]:.3f}"
           f" / random {c['random'].mean_best_of_k[-1]:.3f}")
    sec, ev = timed(lambda: evaluate(mat, k=10))
    c = ev.methods
    record(f"leave-one-out {n:,} x {m:,}, K=10, with both portfolios", sec, 60.0,
           f"best-of-10 zeroshot {c['zeroshot'].mean_best_of_k[-1]:.3f} / "
           f"greedy-portfolio {c['greedy-portfolio'].mean_best_of_k[-1]:.3f}")
    sec, ev = timed(lambda: evaluate(mat, k=n, methods=base))
    record(f"leave-one-out {n:,} x {m:,}, K={n:,} (full rankings)", sec, 60.0, "")
    sec, _ = timed(lambda: evaluate(mat, k=10, random_perms=1000, seed=0, methods=base))
    record(f"leave-one-out {n:,} x {m:,}, K=10, 1000 random perms", sec, None, "")
    small = synthetic(200 // scale, 20, seed=4)
    sec, ev = timed(lambda: evaluate(small, k=5, tol="auto", methods=("cbs",)))
    chosen = sorted(set((ev.tol_per_fold or {}).values()))
    record(f"leave-one-out {200 // scale:,} x 20, K=5, tol auto (nested)", sec, None, f"tolerances chosen {chosen}")

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

        # `staytuned cbs rank` end to end against pandas reading the same file.
        command_vs_pandas(Path(tmp), scale, repeats=repeats, record=record, rows=rows)

    meta = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}",
        "cpu": cpu_model(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": _version("pandas"),
        "pyarrow": _version("pyarrow"),
        "quick": args.quick,
        "results": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
