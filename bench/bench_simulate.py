"""Benchmark of the search strategies and static rankings as black-box replays (``staytuned simulate``).

For each table: leave one dataset out, let every strategy propose k = 1..10 configs from the
held-out dataset's configs, look the scores up, and report the mean best-of-k normalized score,
the share of held-out datasets within 1% of their best and the mean trials until within 1% (11
when never within 10), averaged over held-out datasets and seeds. Strategies that transfer only
see the other datasets. Beside them, the static rankings of ``staytuned.cbs.portfolios`` (cbs,
zeroshot, greedy-portfolio, best-average) as ``static:<ranker>``. Tables:

* ``rag_hpo_bench.csv`` (../shared/tables; skipped when absent): 162 RAG configs, 5 datasets with
  -Dev and -Test splits; the black box answers with the -Dev score, the tried configs are scored
  on -Test. Metrics: Lexical-AC and LLMaaJ-AC.
* ``julia_decoding_sweep.csv``: dataset = Julia task (14), config = (model, temperature, top_p)
  (216, not all on every task), score = unit tests passed / unit tests, mean over repeats.
* our SmolLM2-135M study (``studies/smollm2/analysis/grid.csv``): 24 LoRA and 24 full
  fine-tuning configs x 8 datasets, train size 100, seed 0.
* synthetic families (``staytuned.search.synthetic.family_matrix``) that vary one factor at a
  time around 20 datasets x 200 configs, 4 clusters, noise 0.01: datasets 5..500, configs
  20..2,000, noise 0..0.05, clusters 1 / 4 / one per dataset; 2 tables per setting. Big tables
  hold out at most ``--max-holdouts`` datasets (evenly spaced) and use fewer seeds: the JSON says
  how many per table.

``--cost`` measures the transfer rule's time per proposal on a 2,000-config x 500-dataset table.
Run: ``.venv/bin/python bench/bench_simulate.py [--quick] [--markdown out.md]``; writes
bench/results/simulate.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STAYTUNED_SHARED", REPO.parent / "shared"))
SMOLLM2 = REPO / "studies" / "smollm2" / "analysis" / "grid.csv"
MINE = "transfer"
STATIC = ("cbs", "zeroshot", "greedy-portfolio", "best-average")
KS = range(2, 6)  # the must-show: best-of-k at k = 2..5


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


def smollm2_matrix(method: str) -> Any | None:
    from staytuned.results import load_results

    if not SMOLLM2.is_file():
        return None
    return load_results(SMOLLM2).slice(method=method, train_size=100).score_matrix()


def families(quick: bool) -> list[tuple[str, dict[str, Any]]]:
    """(family label, family_matrix kwargs) around the 20 x 200, 4 clusters, noise 0.01 centre."""
    centre = {"n_datasets": 20, "n_configs": 200, "n_clusters": 4, "noise": 0.01}
    if quick:
        return [("datasets", {**centre, "n_datasets": 5}), ("configs", {**centre, "n_configs": 20})]
    out: list[tuple[str, dict[str, Any]]] = []
    out += [("datasets", {**centre, "n_datasets": d, "n_clusters": min(4, d)}) for d in (5, 20, 100, 500)]
    out += [("configs", {**centre, "n_configs": c}) for c in (20, 2000)]
    out += [("noise", {**centre, "noise": x}) for x in (0.0, 0.05)]
    out += [("clusters", {**centre, "n_clusters": c}) for c in (1, 20)]
    return out


def holdouts(m: int, cap: int) -> list[int] | None:
    return None if m <= cap else np.linspace(0, m - 1, cap).round().astype(int).tolist()


def seeds_for(n: int, m: int, seeds: int) -> int:
    """Fewer seeds on the big tables (stochastic strategies only; said in the JSON)."""
    return seeds if n * m <= 20_000 else max(3, seeds // 3)


def strategies() -> list[str]:
    """Every registered strategy but gp (its own, smaller run: ~2 s per 10-trial replay)."""
    from staytuned.search.strategies import STRATEGIES

    return [s for s in STRATEGIES if s != "gp"]


def curves(sim: Any) -> dict[str, dict[str, Any]]:
    out = {}
    for c in sim.strategies:
        out[c.strategy] = {"mean_best_of_k": [round(x, 4) for x in c.mean_best_of_k],
                           "solved_fraction": [round(x, 4) for x in c.solved_fraction],
                           "mean_trials_to_solve": round(c.trials_to_solve, 3)}
    return out


def average(entries: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Curves averaged over several tables of one setting (each table weighs the same)."""
    out: dict[str, dict[str, Any]] = {}
    for name in entries[0]:
        cs = [e[name] for e in entries]
        out[name] = {key: np.round(np.mean([c[key] for c in cs], axis=0), 4).tolist()
                     for key in ("mean_best_of_k", "solved_fraction", "mean_trials_to_solve")}
    return out


def must_show(res: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Transfer's best-of-k >= every static ranking's at k = 2..5; trials to 1% <= 0.6 x tpe's."""
    b = {s: np.array(v["mean_best_of_k"]) for s, v in res.items()}
    mine = b[MINE]
    statics = [f"static:{r}" for r in STATIC if f"static:{r}" in b]
    envelope = np.max([b[s] for s in statics], axis=0)
    gaps = {f"k={k}": round(float(mine[k - 1] - envelope[k - 1]), 4) for k in KS}
    t_mine = res[MINE]["mean_trials_to_solve"]
    t_tpe = res["tpe"]["mean_trials_to_solve"] if "tpe" in res else None
    return {
        "best_static_per_k": {f"k={k}": max(statics, key=lambda s, k=k: b[s][k - 1]) for k in KS},
        "gap_to_best_static": gaps,
        "ge_best_static_k2_5": bool(all(g >= -1e-9 for g in gaps.values())),
        "trials_ratio_to_tpe": None if t_tpe is None else round(t_mine / t_tpe, 3),
        "trials_le_0.6_tpe": None if t_tpe is None else bool(t_mine <= 0.6 * t_tpe),
    }


def cost(n: int = 2000, m: int = 500, proposals: int = 10) -> dict[str, Any]:
    """Seconds per transfer proposal (and one-off setup) on an n x m table."""
    from staytuned import cbs
    from staytuned.search.strategies.transfer import TransferRule
    from staytuned.search.synthetic import family_matrix

    mx = family_matrix(m, n, seed=0)
    t0 = time.perf_counter()
    rule = TransferRule(np.asarray(cbs.normalize(mx)))
    setup = time.perf_counter() - t0
    look = np.asarray(cbs.normalize(mx))[:, 0]
    tried: list[int] = []
    obs: list[float] = []
    times = []
    for _ in range(proposals):
        t0 = time.perf_counter()
        c = rule.next_config(tried, obs)
        times.append(time.perf_counter() - t0)
        tried.append(c)
        obs.append(float(look[c]))
    return {"configs": n, "datasets": m, "setup_s": round(setup, 3),
            "per_proposal_s": {"median": round(float(np.median(times)), 4),
                               "max": round(float(np.max(times)), 4)},
            "proposals": proposals}


def cpu() -> dict[str, Any]:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        name = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines()
                     if ln.startswith("Model name")), platform.processor())
    except OSError:
        lscpu, name = "", platform.processor()
    return {"model": name, "avx512_bf16": "avx512_bf16" in lscpu, "cores": os.cpu_count(),
            "machine": platform.machine()}


def print_table(title: str, res: dict[str, dict[str, Any]]) -> None:
    ks = (1, 2, 3, 4, 5, 10)
    print(f"\n{title}")
    print(f"{'strategy':<24}" + "".join(f"{'k=' + str(k):>7}" for k in ks) + f"{'in 1%@5':>9}{'to 1%':>7}")
    for s, v in res.items():
        cells = "".join(f"{v['mean_best_of_k'][k - 1]:>7.3f}" for k in ks)
        print(f"{s:<24}{cells}{v['solved_fraction'][4]:>9.2f}{v['mean_trials_to_solve']:>7.2f}")


def markdown(report: dict[str, Any]) -> str:
    lines = []
    for name, entry in report["tables"].items():
        res = entry["strategies"]
        ms = entry["must_show"]
        lines.append(f"\n**{name}** ({entry['shape']}; {entry['protocol']})\n")
        lines.append("| method | " + " | ".join(f"k={k}" for k in range(1, 11))
                     + " | within 1% k=1/3/5/10 | trials to 1% |")
        lines.append("|---" * 13 + "|")
        for s, v in res.items():
            b = v["mean_best_of_k"]
            sf = v["solved_fraction"]
            label = f"**{s}**" if s == MINE else s
            lines.append(f"| {label} | " + " | ".join(f"{x:.3f}" for x in b) + " | "
                         + "/".join(f"{sf[k - 1]:.2f}" for k in (1, 3, 5, 10))
                         + f" | {v['mean_trials_to_solve']:.2f} |")
        gaps = ", ".join(f"{k} {g:+.3f}" for k, g in ms["gap_to_best_static"].items())
        lines.append(f"\nMust-show: transfer minus best static ranking at {gaps} -> "
                     f"{'**holds**' if ms['ge_best_static_k2_5'] else '**does not hold**'}; "
                     f"trials to 1% = {ms['trials_ratio_to_tpe']} x tpe's -> "
                     f"{'**holds**' if ms['trials_le_0.6_tpe'] else '**does not hold**'}.")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="1 seed, two small synthetic tables only, no real tables, no gp")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--max-holdouts", type=int, default=20)
    ap.add_argument("--tables-per-setting", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "simulate.json")
    ap.add_argument("--gp-seeds", type=int, default=2, help="gp's seeds on the real tables")
    ap.add_argument("--markdown", type=Path, default=None, help="also write the tables as markdown")
    ap.add_argument("--cost", action="store_true", help="only the transfer rule's cost per proposal")
    args = ap.parse_args()
    from staytuned.search.simulate import simulate
    from staytuned.search.synthetic import family_matrix

    started = time.time()
    report: dict[str, Any] = {"cpu": cpu(), "date": datetime.now(UTC).strftime("%Y-%m-%d"),
                              "k": args.k, "tol": 0.01, "tables": {}}
    report["transfer_cost"] = cost() if not args.quick else cost(400, 100)
    print(f"transfer cost: {report['transfer_cost']}")
    if args.cost:
        print(json.dumps(report, indent=2))
        return 0
    seeds = 1 if args.quick else args.seeds
    if args.quick:
        args.max_holdouts = min(args.max_holdouts, 5)

    def replay(choose: Any, score: Any = None, gp_seeds: int = 0
               ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
        n, m = choose.shape
        held = holdouts(m, args.max_holdouts)
        sd = seeds_for(n, m, seeds)
        sim = simulate(choose, score, strategies=strategies(), rankers=STATIC, k=args.k,
                       seeds=sd, holdouts=held)
        res = curves(sim)
        if gp_seeds:
            gp = simulate(choose, score, strategies=["gp"], k=args.k, seeds=gp_seeds, holdouts=held)
            res = {**{s: v for s, v in res.items() if s in ("grid", "random", "tpe")},
                   **curves(gp), **res}
        proto = {"seeds": sd, "held_out": m if held is None else len(held), "gp": gp_seeds}
        return res, proto

    def add(name: str, res: dict[str, dict[str, Any]], shape: str, proto: dict[str, Any],
            seconds: float, **extra: Any) -> None:
        held = f"{proto['held_out']} held out" + (f", gp {proto['gp']} seeds" if proto["gp"]
                                                  else ", gp left out (slow)")
        entry = {"shape": shape, "protocol": f"{proto['seeds']} seeds, {held}",
                 "seeds": proto["seeds"], "held_out": proto["held_out"], "strategies": res,
                 "must_show": must_show(res), "seconds": round(seconds, 1), **extra}
        report["tables"][name] = entry
        print_table(f"{name}: {shape}, {entry['protocol']} ({seconds:.0f} s)", res)

    real: list[tuple[str, Any, Any]] = []
    if not args.quick:
        for metric in ("Lexical-AC", "LLMaaJ-AC"):
            mats = rag_matrices(metric)
            if mats is not None:
                real.append((f"rag_hpo_bench {metric} (choose -Dev, score -Test)", *mats))
        jm = julia_matrix()
        if jm is not None:
            real.append(("julia_decoding_sweep (unit tests passed)", jm, None))
        for method in ("lora", "full"):
            sm = smollm2_matrix(method)
            if sm is not None:
                real.append((f"smollm2-135m {method}, train size 100", sm, None))
    for name, choose, score in real:
        t0 = time.time()
        res, proto = replay(choose, score, gp_seeds=args.gp_seeds)
        add(name, res, f"{choose.shape[1]} datasets x {choose.shape[0]} configs", proto,
            time.time() - t0)
    for family, kw in families(args.quick):
        t0 = time.time()
        per = []
        proto: dict[str, Any] = {}
        n_tab = 1 if args.quick else args.tables_per_setting
        for seed in range(n_tab):
            res, proto = replay(family_matrix(**kw, seed=seed))
            per.append(res)
        label = (f"synthetic {family}: {kw['n_datasets']} datasets x {kw['n_configs']} configs, "
                 f"{kw['n_clusters']} clusters, noise {kw['noise']}")
        add(label, average(per), f"mean of {n_tab} tables (seeds 0..{n_tab - 1})", proto,
            time.time() - t0, family=family, settings=kw)
    report["seconds"] = round(time.time() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown is not None:
        args.markdown.write_text(markdown(report))
    print("\nmust-show (transfer minus best static at k=2..5; trials / tpe's):")
    for name, entry in report["tables"].items():
        ms = entry["must_show"]
        print(f"  {name}: {ms['gap_to_best_static']} trials x{ms['trials_ratio_to_tpe']}")
    print(f"\nwritten {args.out} in {report['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
