"""Benchmark of the search strategies as black-box replays (``staytuned simulate``).

For each table: leave one dataset out, let every strategy propose k = 1..10 configs from the
held-out dataset's configs, look the scores up, and report the mean best-of-k normalized score
and the fraction of datasets within 1% of their best, averaged over datasets and seeds. The CBS
strategies only see the other datasets. Tables:

* ``rag_hpo_bench.csv`` (../shared/tables; skipped when absent): 162 RAG configs, 5 datasets with
  -Dev and -Test splits; the black box answers with the -Dev score, the tried configs are scored
  on -Test. Metrics: Lexical-AC (primary: deterministic) and LLMaaJ-AC.
* ``julia_decoding_sweep.csv``: dataset = Julia task (14), config = (model, temperature, top_p)
  (216, 36 per model, not all on every task), score = unit tests passed / unit tests, averaged
  over the repeats of a cell.
* synthetic clustered tables (``staytuned.search.synthetic.clustered_table``): 54 configs,
  datasets in clusters that share their optimum (known structure), several seeds.

Run: ``.venv/bin/python bench/bench_simulate.py [--quick]``; writes bench/results/simulate.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STAYTUNED_SHARED", REPO.parent / "shared"))
STRATEGIES = ["grid", "random", "tpe", "gp", "cbs", "cbs+tpe", "cbs-adaptive"]


def rag_matrices(metric: str) -> tuple[Any, Any] | None:
    from staytuned.results import ColumnSpec, load_results

    path = SHARED / "tables" / "rag_hpo_bench.csv"
    if not path.is_file():
        return None
    hps = ("Chunk Size", "Chunk Overlap", "Embedding Model", "Top-K", "Generative Mode")
    others = tuple(m for m in ("Context Correctness", "LLMaaJ-AC", "Lexical-AC", "Lexical-FF") if m != metric)
    t = load_results(path, ColumnSpec(dataset="Dataset", score=metric, config=None, hps=hps,
                                      ignore=ColumnSpec().ignore + others))
    choose, score, _ = t.eval_matrices("Dev", "Test")
    return choose, score


def julia_matrix() -> Any | None:
    import csv

    from staytuned.results import from_records

    path = SHARED / "tables" / "julia_decoding_sweep.csv"
    if not path.is_file():
        return None
    rows = []
    with path.open() as fh:
        for r in csv.DictReader(fh):
            utc = float(r["utc"])
            rows.append({"dataset": r["name"], "hp_model": r["model"], "hp_temperature": float(r["T"]),
                         "hp_top_p": float(r["P"]), "score": float(r["utp"]) / utc if utc else 0.0,
                         "metric": "unit_tests_passed"})
    return from_records(rows).score_matrix(agg="mean")


def synthetic_matrices(n_tables: int) -> list[tuple[str, Any]]:
    from staytuned.results import from_records
    from staytuned.search.synthetic import clustered_table

    out = []
    for clusters, per in ((4, 5), (2, 10)):
        for seed in range(n_tables):
            m = from_records(clustered_table(clusters, per, seed=seed)).score_matrix()
            out.append((f"synthetic {clusters}x{per} seed {seed}", m))
    return out


def summarize(sims: list[Any]) -> dict[str, dict[str, Any]]:
    """Average curves over several tables (each table weighs the same)."""
    out: dict[str, dict[str, Any]] = {}
    for name in sims[0].to_dict()["strategies"]:
        curves = [s.to_dict()["strategies"][name] for s in sims]
        out[name] = {
            "mean_best_of_k": np.mean([c["mean_best_of_k"] for c in curves], axis=0).tolist(),
            "solved_fraction": np.mean([c["solved_fraction"] for c in curves], axis=0).tolist(),
            "mean_trials_to_solve": float(np.mean([c["mean_trials_to_solve"] for c in curves])),
        }
    return out


def targets(res: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets, checked on one table's curves."""
    b = {s: np.array(v["mean_best_of_k"]) for s, v in res.items()}
    t = {s: v["mean_trials_to_solve"] for s, v in res.items()}
    k5 = slice(0, 5)
    ad, cb = b["cbs-adaptive"], b["cbs"]
    base = [s for s in ("tpe", "random") if s in b]
    return {
        "adaptive_beats_cbs_every_k_le_5": bool(np.all(ad[k5] > cb[k5])),
        "adaptive_ge_cbs_every_k_le_5": bool(np.all(ad[k5] >= cb[k5] - 1e-12)),
        "cbs_and_adaptive_beat_tpe_random_every_k_le_5": bool(all(
            np.all(x[k5] > b[s][k5]) for x in (ad, cb) for s in base)),
        "adaptive_best_of_3": float(ad[2]),
        "adaptive_best_of_3_ge_0.95": bool(ad[2] >= 0.95),
        "trials_to_solve": {s: t[s] for s in ("cbs-adaptive", "cbs", "tpe", "random") if s in t},
        "adaptive_needs_half_the_trials_of_tpe_random": bool(all(
            t["cbs-adaptive"] <= 0.5 * t[s] for s in base)),
    }


def print_table(title: str, res: dict[str, dict[str, Any]]) -> None:
    ks = (1, 2, 3, 5, 10)
    print(f"\n{title}")
    print(f"{'strategy':<14}" + "".join(f"{'k=' + str(k):>14}" for k in ks) + f"{'to solve':>10}")
    for s, v in res.items():
        cells = "".join(f"{v['mean_best_of_k'][k - 1]:>8.3f}/{v['solved_fraction'][k - 1]:<5.2f}" for k in ks)
        print(f"{s:<14}{cells}{v['mean_trials_to_solve']:>10.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 seeds, 1 synthetic table per shape")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "simulate.json")
    args = ap.parse_args()
    seeds = 3 if args.quick else args.seeds
    n_syn = 1 if args.quick else 3

    from staytuned.search.simulate import simulate

    started = time.time()
    report: dict[str, Any] = {
        "machine": f"{platform.machine()} {os.cpu_count()}-core CPU, {platform.system()}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"), "k": args.k, "seeds": seeds,
        "tol": 0.01, "tables": {},
    }

    def run(name: str, choose: Any, score: Any = None) -> dict[str, Any]:
        t0 = time.time()
        sim = simulate(choose, score, strategies=STRATEGIES, k=args.k, seeds=seeds)
        res = summarize([sim])
        print_table(f"{name}: {choose.shape[1]} datasets x {choose.shape[0]} configs "
                    f"({time.time() - t0:.0f} s)", res)
        entry = {"datasets": choose.shape[1], "configs": choose.shape[0], "strategies": res,
                 "targets": targets(res), "seconds": round(time.time() - t0, 1)}
        report["tables"][name] = entry
        return entry

    for metric in ("Lexical-AC", "LLMaaJ-AC"):
        mats = rag_matrices(metric)
        if mats is None:
            print("../shared/tables/rag_hpo_bench.csv absent: skipped", file=sys.stderr)
            break
        run(f"rag_hpo_bench {metric} (choose -Dev, score -Test)", *mats)
    jm = julia_matrix()
    if jm is not None:
        run("julia_decoding_sweep (task x model,T,P; unit tests passed)", jm)
    syn = synthetic_matrices(n_syn)
    sims = []
    t0 = time.time()
    for _name, m in syn:
        sims.append(simulate(m, strategies=STRATEGIES, k=args.k, seeds=seeds))
    res = summarize(sims)
    title = f"synthetic clustered ({len(syn)} tables: 4x5 and 2x10 clusters x datasets, 54 configs)"
    print_table(f"{title} ({time.time() - t0:.0f} s)", res)
    report["tables"][title] = {"tables": [n for n, _ in syn], "strategies": res, "targets": targets(res)}
    report["seconds"] = round(time.time() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print("\ntargets:")
    for name, entry in report["tables"].items():
        print(f"  {name}: {json.dumps(entry['targets'])}")
    print(f"\nwritten {args.out} in {report['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
