"""Analyse the SmolLM2 study with staytuned's own commands, then write its tables.

    .venv/bin/python studies/smollm2/analyze.py

1. ``staytuned results export`` turns grid.db into results.csv (every run: config, metrics,
   seed, runtime, package versions).
2. analysis/grid.csv: the grid's own runs (seed 0, the configs of spaces/{lora,full}.yaml). The
   tool defaults and the seed-1 repeats stay out of it: CBS ranks the grid, and the defaults are
   a baseline scored against the grid's best, not a candidate.
3. Per method and train size, on grid.csv: ``staytuned cbs evaluate`` (leave-one-dataset-out
   best-of-top-k, k = 1..5, against best-average and random) and ``staytuned recommend`` (top 5),
   written to analysis/.
4. RESULTS.md: those curves, the same in raw points, LoRA vs full, train size 100 vs 1000,
   seed-to-seed noise and per-HP effects; and the recommendations the package ships,
   src/staytuned/presets/recommendations/smollm2_135m.yaml.

Works on a partial grid too (tables say what is missing), so it can run after every chunk.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

from staytuned.cbs import normalize, rank, tiebreak_order
from staytuned.results import load_results
from staytuned.search.space import config_id, load_space

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ST = str(REPO / ".venv" / "bin" / "staytuned")
TABLE = HERE / "results.csv"
OUT = HERE / "analysis"
GRID_TABLE = OUT / "grid.csv"
PRESET = REPO / "src" / "staytuned" / "presets" / "recommendations" / "smollm2_135m.yaml"
#: The slim copy of results.csv shipped beside the preset, for cbs-adaptive's per-dataset scores.
PRESET_TABLE = PRESET.with_suffix(".csv")
SHIPPED_COLUMNS = ("dataset", "model", "method", "train_size", "seed", "config_id", "metric", "score",
                   "status")
MODEL = "smollm2-135m"
K = 5
CLASSIFICATION = ["sst2", "trec", "tweeteval_emotion", "tweeteval_irony", "tweeteval_hate",
                  "tweeteval_offensive"]
DATASETS = [*CLASSIFICATION, "scitldr", "squad"]


def defaults() -> dict[str, dict[str, str]]:
    """method -> {label: config id} of the tool-default baselines (spaces/defaults-*.yaml)."""
    out: dict[str, dict[str, str]] = {}
    labels = {"lora": ["TRL+PEFT defaults", "LLaMA-Factory example"], "full": ["TRL defaults"]}
    for method, names in labels.items():
        grid = load_space(str(HERE / "spaces" / f"defaults-{method}.yaml")).grid({"method": method})
        out[method] = {name: config_id(c) for name, c in zip(names, grid, strict=True)}
    return out


def grid_ids() -> dict[str, set[str]]:
    """method -> config ids of its study grid (spaces/{method}.yaml)."""
    return {m: {config_id(c) for c in load_space(str(HERE / "spaces" / f"{m}.yaml")).grid({"method": m})}
            for m in ("lora", "full")}


Row = dict[str, str]


def drop_incomplete_cells(rows: list[Row], ids: dict[str, set[str]]) -> tuple[list[Row], list[str]]:
    """Leave out the size-100 cells (method x dataset) that have not run every grid config yet.

    A half-run cell would rank configs on the datasets they happened to reach (and drop a slice's
    shipped recommendations mid-study), so the analysis waits until the cell is whole. Returns
    the kept rows and a note per dropped cell; ``rows`` hold runs of grid configs only.
    """
    ran: dict[tuple[str, str], set[str]] = {}
    for r in rows:
        if r["train_size"] == "100":
            ran.setdefault((r["method"], r["dataset"]), set()).add(r["config_id"])
    partial = {cell: len(have) for cell, have in ran.items() if not ids[cell[0]] <= have}
    kept = [r for r in rows if r["train_size"] != "100" or (r["method"], r["dataset"]) not in partial]
    notes = [f"{d} ({m}: {n} of {len(ids[m])} configs)" for (m, d), n in sorted(partial.items())]
    return kept, notes


def write_grid_table() -> list[str]:
    """results.csv restricted to the grid's own runs: seed 0, a config of the method's grid, in a
    cell that has run the whole grid. Returns the cells left out because they are still running."""
    import csv

    ids = grid_ids()
    with TABLE.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols = list(reader.fieldnames or [])
        rows = [r for r in reader if r["seed"] == "0" and r["config_id"] in ids.get(r["method"], ())]
    rows, partial = drop_incomplete_cells(rows, ids)
    OUT.mkdir(parents=True, exist_ok=True)
    with GRID_TABLE.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=cols)
        writer.writeheader()
        writer.writerows(rows)
    return partial


def baseline_scores(full_table, method: str, size: int, base: dict[str, str]) -> dict[str, dict[str, float]]:
    """label -> {dataset: score x 100} of the tool-default baselines (run with seed 0 only)."""
    return {label: score_of(full_table, method, size, cid) for label, cid in base.items()}


def st(*args: str) -> None:
    subprocess.run([ST, *args, "-q"], check=True, cwd=REPO)


def run_commands(slices: list[tuple[str, int]]) -> None:
    OUT.mkdir(exist_ok=True)
    for old in OUT.glob("evaluate-*-default*.json"):  # written by earlier versions of this script
        old.unlink()
    for method, size in slices:
        tag = f"{method}-{size}"
        st("cbs", "evaluate", str(GRID_TABLE), "--model", MODEL, "--method", method,
           "--train-size", str(size), "--k", str(K), "--json", str(OUT / f"evaluate-{tag}.json"),
           "--plot", str(OUT / f"evaluate-{tag}.png"))
        st("recommend", str(GRID_TABLE), "--model", MODEL, "--method", method, "--train-size", str(size),
           "--k", str(K), "--yaml", str(OUT / f"recommend-{tag}.yaml"))


# ------------------------------------------------------------------------------------------
# tables


def pts(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.1f}".replace("-0.0", "0.0")


def _num(x: float) -> str:
    """1e-4 and 3e-5 as the README writes them; 16 and 0.5 as they are."""
    return f"{x:.0e}".replace("e-0", "e-") if 0 < abs(x) < 0.01 else f"{x:g}"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def expected_best_of_random(values: np.ndarray, k: int) -> float:
    """E[max of k configs drawn without replacement] (exact)."""
    v = np.sort(values)
    n = len(v)
    k = min(k, n)
    # P(max is the i-th smallest, 1-based) = C(i-1, k-1) / C(n, k)
    probs = np.array([math.comb(i - 1, k - 1) for i in range(1, n + 1)], float) / math.comb(n, k)
    return float((v * probs).sum())


def _nanmean_rows(a: np.ndarray) -> np.ndarray:
    """Row means over the non-missing cells; NaN for a config with none (not yet run)."""
    cnt = (~np.isnan(a)).sum(axis=1)
    return np.where(cnt > 0, np.nansum(a, axis=1) / np.maximum(cnt, 1), np.nan)


def held_out_column(mx, j: int) -> np.ndarray | None:
    """Dataset ``j``'s scores x 100 with failed runs at its worst grid score (as ``staytuned cbs``
    counts them) and NaN where a config has not run; None under 2 scored configs."""
    col = mx.scores[:, j] * 100
    if (~np.isnan(col)).sum() == 0:
        return None
    col[mx.failed[:, j]] = np.nanmin(col)
    return col if (~np.isnan(col)).sum() >= 2 else None


def held_out_orders(mx, held_out: str) -> dict[str, list[int]]:
    """CBS's and best-average's config order (row indices of ``mx``), ranked without ``held_out``."""
    sub = mx.subset(datasets=[x for x in mx.datasets if x != held_out])
    return {
        "CBS": [mx.config_ids.index(c) for c in rank(sub).config_ids],
        "best-average": [int(i) for i in tiebreak_order(_nanmean_rows(normalize(sub)), sub.config_ids)],
    }


def loo_points(mx, baselines: dict[str, dict[str, float]]) -> dict[str, list[float]]:
    """Leave-one-dataset-out mean gap to the per-dataset best of the grid (in points), k = 1..K.

    ``baselines``: label -> {dataset: score x 100, NaN when the run failed} of fixed configs
    outside the grid (a fixed config ignores k). A failed run counts as the dataset's worst grid
    score, as in ``staytuned cbs``; a config not run on a dataset is skipped there."""
    gaps: dict[str, list[list[float]]] = defaultdict(list)
    for j, d in enumerate(mx.datasets):
        col = held_out_column(mx, j)
        if col is None:
            continue
        ok, worst, best = ~np.isnan(col), np.nanmin(col), np.nanmax(col)
        for name, order in held_out_orders(mx, d).items():
            order = [i for i in order if ok[i]]
            gaps[name].append([best - max(col[order[:k]]) for k in range(1, K + 1)])
        gaps["random"].append([best - expected_best_of_random(col[ok], k) for k in range(1, K + 1)])
        for label, scores_d in baselines.items():
            if d in scores_d:
                gaps[label].append([best - (worst if math.isnan(scores_d[d]) else scores_d[d])] * K)
    return {name: list(np.mean(np.array(v), axis=0)) for name, v in gaps.items()}


def section_loo(table, full_table, slices, base) -> str:
    out = ["### Leave-one-dataset-out: best of the top k configs on the held-out dataset\n",
           "Each dataset in turn is held out; the configs are ranked on the other datasets and the "
           "best of the top k is scored on the held-out one. **Points below the best grid config "
           "on that dataset** (mean over held-out datasets; accuracy, ROUGE-L or F1 x 100; lower "
           "is better). A tool's defaults are one fixed config (the same for every k), run on the "
           "same cells but not part of the grid; a negative gap would mean it beat every grid "
           "config. Then CBS, best-average and random in `staytuned cbs evaluate`'s normalized "
           "units (1 = best config of the dataset, 0 = worst) with the share of datasets solved "
           "(within 1% of the best).\n"]
    for method, size in slices:
        mx = table.slice(model=MODEL, method=method, train_size=size).score_matrix()
        gaps = loo_points(mx, baseline_scores(full_table, method, size, base[method]))
        rows = [[name, *[pts(g) for g in gaps[name]]] for name in gaps]
        out.append(f"**{method}, train size {size}** ({len(mx.config_ids)} configs, "
                   f"{len(mx.datasets)} datasets)\n")
        out.append(md_table(["points below best", *[f"k={k}" for k in range(1, K + 1)]], rows))
        path = OUT / f"evaluate-{method}-{size}.json"
        if path.is_file():
            data = json.loads(path.read_text())
            rows = [[name, *[f"{v:.3f} ({s:.0%})" for v, s in
                             zip(c["mean_best_of_k"], c["solved_fraction"], strict=True)]]
                    for name, c in data["methods"].items() if name != "oracle"]
            out.append("\n" + md_table(["normalized (solved)", *[f"k={k}" for k in range(1, K + 1)]], rows))
        out.append("")
    return "\n".join(out)


def short_config(hps: dict) -> str:
    """A grid config in a few words: the HPs the study's grids vary."""
    parts = [f"lr {_num(hps['learning_rate'])}", str(hps.get("lr_scheduler", "")),
             f"batch {hps['batch_size']}", f"{hps['epochs']:g} ep"]
    if "lora_r" in hps:
        parts.append(f"r {hps['lora_r']}/α {hps['lora_alpha']}")
    return ", ".join(p for p in parts if p)


def loo_picks(mx) -> list[list[str]]:
    """Per held-out dataset: its best grid config, and CBS's and best-average's top 1 ranked
    without it, each with its score there; then the HPs in which the two top 1 differ."""
    rows = []
    for j, d in enumerate(mx.datasets):
        col = held_out_column(mx, j)
        if col is None:
            continue
        picks = [int(np.nanargmax(col))]
        picks += [next(i for i in order if not np.isnan(col[i])) for order in held_out_orders(mx, d).values()]
        a, b = mx.hps[picks[1]], mx.hps[picks[2]]
        differ = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        rows.append([d, *[f"{pts(col[i])}: {short_config(mx.hps[i])}" for i in picks],
                     ", ".join(differ) if differ else "same config"])
    return rows


def section_loo_picks(table, slices) -> str:
    out = ["### What the top 1 is on each held-out dataset\n",
           "The configs behind the k=1 column above: the held-out dataset's best grid config, and the "
           "top 1 of CBS and of best-average ranked on the other datasets, each with its score "
           "(x 100) on the held-out dataset.\n"]
    for method, size in slices:
        mx = table.slice(model=MODEL, method=method, train_size=size).score_matrix()
        out.append(f"**{method}, train size {size}**\n")
        out.append(md_table(["held out", "best", "CBS top 1", "best-average top 1", "the two top 1 differ in"],
                            loo_picks(mx)))
        out.append("")
    return "\n".join(out)


def best_by_dataset(table, method, size, configs=None) -> dict[str, tuple[float, str]]:
    try:
        mx = table.slice(model=MODEL, method=method, train_size=size).score_matrix()
    except Exception:  # slice not run yet
        return {}
    out = {}
    for j, d in enumerate(mx.datasets):
        col = mx.scores[:, j] * 100
        idx = [i for i, c in enumerate(mx.config_ids) if (configs is None or c in configs) and not math.isnan(col[i])]
        if idx:
            i = max(idx, key=lambda i: col[i])
            out[d] = (float(col[i]), mx.config_ids[i])
    return out


def score_of(table, method, size, cid) -> dict[str, float]:
    try:
        mx = table.slice(model=MODEL, method=method, train_size=size).score_matrix()
    except Exception:
        return {}
    if cid not in mx.config_ids:
        return {}
    i = mx.config_ids.index(cid)  # NaN: the run failed
    return {d: float(mx.scores[i, j] * 100) for j, d in enumerate(mx.datasets)
            if not math.isnan(mx.scores[i, j]) or mx.failed[i, j]}


def untuned() -> dict[str, float]:
    """The untuned model's score per dataset (untuned.sh: same rows, same scoring)."""
    out = {}
    for path in sorted((HERE / "analysis" / "untuned").glob("*.json")):
        data = json.loads(path.read_text())
        if data.get("status") == "ok":
            out[data["task"]] = float(data["score"]) * 100
    return out


def section_methods(table, full_table, base) -> str:
    lora, full = best_by_dataset(table, "lora", 100), best_by_dataset(table, "full", 100)
    zero = untuned()
    fixed = {**{f"{label} (LoRA)": score_of(full_table, "lora", 100, cid) for label, cid in base["lora"].items()},
             **{f"{label} (full)": score_of(full_table, "full", 100, cid) for label, cid in base["full"].items()}}
    rows, wins = [], 0
    for d in DATASETS:
        if d not in lora and d not in full:
            continue
        a, b = lora.get(d, (math.nan, "")), full.get(d, (math.nan, ""))
        wins += a[0] > b[0]
        rows.append([d, pts(zero.get(d, math.nan)), pts(a[0]), pts(b[0]), pts(a[0] - b[0]),
                     *[pts(f.get(d, math.nan)) for f in fixed.values()]])
    both = sum(1 for d in DATASETS if d in lora and d in full)
    head = ("### LoRA vs full fine-tuning (train size 100, best config of each grid)\n\n"
            f"LoRA's best config beats full fine-tuning's best on {wins} of {both} datasets. "
            "The untuned model and the tool defaults are scored on the same validation rows.\n\n")
    out = head + md_table(["dataset", "untuned", "LoRA best", "full best", "LoRA - full", *fixed], rows)
    big = lora_vs_full(best_by_dataset(table, "lora", 1000), best_by_dataset(table, "full", 1000))
    if big:
        rows, wins, ties, mean = big
        out += ("\n\nAt train size 1000, the best of the configs each method re-ran there (its "
                f"size-100 picks, below): LoRA ahead on {wins} of {len(rows)} datasets, level on "
                f"{ties}; LoRA - full {pts(mean)} points on average.\n\n"
                + md_table(["dataset", "LoRA @1000", "full @1000", "LoRA - full"], rows))
    return out


def lora_vs_full(lora: dict[str, tuple[float, str]], full: dict[str, tuple[float, str]]
                 ) -> tuple[list[list[str]], int, int, float] | None:
    """Datasets both methods ran: rows (dataset, LoRA, full, difference), LoRA wins, ties and
    the mean difference; None if they share no dataset."""
    both = [d for d in DATASETS if d in lora and d in full]
    if not both:
        return None
    diffs = [lora[d][0] - full[d][0] for d in both]
    rows = [[d, pts(lora[d][0]), pts(full[d][0]), pts(x)] for d, x in zip(both, diffs, strict=True)]
    return (rows, sum(x > 1e-9 for x in diffs), sum(abs(x) <= 1e-9 for x in diffs),
            float(np.mean(diffs)))


def picks_1000(method: str) -> dict[str, list[str]]:
    """Task kind -> config ids re-run at train size 1000, the CBS top 1 of size 100 first."""
    out = {}
    for kind, suffix in (("classification", ""), ("generation", "-gen")):
        path = HERE / "spaces" / f"{method}-1000{suffix}.yaml"
        if path.is_file():
            out[kind] = [config_id(c) for c in load_space(str(path)).grid({"method": method})]
    return out


def size_rows(mx100, mx1000, picks: dict[str, list[str]], method: str
              ) -> list[tuple[list[str], tuple[float, float, float] | None]]:
    """One row per dataset run at 1000: the picks' scores at both sizes and the size-100 best,
    with (lead of the top 1 over the median at 100, that lead at 1000, median at 1000 minus
    the best grid config at 100); None where no median was re-run."""
    def at(mx, cid, d):
        if cid not in mx.config_ids or d not in mx.datasets:
            return math.nan
        return float(mx.scores[mx.config_ids.index(cid), mx.datasets.index(d)] * 100)

    rows = []
    for d in DATASETS:
        ids = picks.get("classification" if d in CLASSIFICATION else "generation", [])
        small, big = [at(mx100, c, d) for c in ids], [at(mx1000, c, d) for c in ids]
        if not ids or math.isnan(big[0]) or math.isnan(small[0]):
            continue
        best100 = float(np.nanmax(mx100.scores[:, mx100.datasets.index(d)]) * 100)
        row = [method, d, pts(best100), pts(small[0]), pts(big[0]), pts(big[0] - small[0])]
        lead = None
        if len(ids) > 1 and not math.isnan(big[1]) and not math.isnan(small[1]):
            row += [pts(small[1]), pts(big[1]), "yes" if big[0] >= big[1] else "no"]
            lead = (small[0] - small[1], big[0] - big[1], big[1] - best100)
        else:
            row += ["–", "–", "–"]
        rows.append((row, lead))
    return rows


def section_sizes(table) -> str:
    """Train size 100 vs 1000 on the configs re-run at 1000 (pick-1000 in run_chunk.sh)."""
    rows, notes = [], []
    for method in ("lora", "full"):
        try:
            mx1000 = table.slice(model=MODEL, method=method, train_size=1000).score_matrix()
            mx100 = table.slice(model=MODEL, method=method, train_size=100).score_matrix()
        except Exception:  # slice not run yet
            continue
        method_rows = size_rows(mx100, mx1000, picks_1000(method), method)
        rows += [row for row, _ in method_rows]
        if note := size_summary([lead for _, lead in method_rows if lead is not None]):
            notes.append(f"- {method}: {note}")
    if not rows:
        return "### Train size 100 vs 1000\n\nNot run yet."
    return ("### Train size 100 vs 1000\n\n"
            "The CBS top 1 of size 100 (ranked per task type) re-run on 1000 training rows, and on "
            "the classification sets the median config of the rest of that ranking as a "
            "reference; the best of the 24 grid configs at size 100 for scale. Scores x 100 on the "
            "same validation rows.\n\n"
            + md_table(["method", "dataset", "best grid config @100", "top 1 @100", "top 1 @1000",
                        "gain", "median @100", "median @1000", "top 1 still ahead @1000"], rows)
            + ("\n\n" + "\n".join(notes) if notes else ""))


def size_summary(leads: list[tuple[float, float, float]]) -> str:
    """One sentence on the (top 1, median) pairs of a method: does the order hold at 1000 rows,
    how far the top 1 leads, and how often more data alone beats the best tuning at 100."""
    if not leads:
        return ""
    a = np.array(leads)
    same = int(((a[:, 0] >= 0) == (a[:, 1] >= 0)).sum())
    return (f"the order of the pair (top 1 vs median) is the same at both sizes on {same} of "
            f"{len(a)} classification sets; the top 1 leads the median by {pts(a[:, 0].mean())} "
            f"points on average at 100 rows and by {pts(a[:, 1].mean())} at 1000; the median at "
            f"1000 rows beats the best grid config at 100 rows on {int((a[:, 2] > 0).sum())} of "
            f"{len(a)}.")


def _avg_ranks(a: np.ndarray) -> np.ndarray:
    """Ranks (1 = lowest) with ties given their average rank."""
    order = np.argsort(a, kind="stable")
    ranks = np.empty(len(a))
    ranks[order] = np.arange(1, len(a) + 1)
    for v in np.unique(a):
        ranks[a == v] = ranks[a == v].mean()
    return ranks


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = _avg_ranks(a), _avg_ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def section_noise(full_table, table) -> str:
    """Seed 0 vs seed 1 on the cells run twice, against the spread of the grid's configs."""
    rows = []
    for method in ("lora", "full"):
        try:
            sl = full_table.slice(model=MODEL, method=method, train_size=100)
            grid = table.slice(model=MODEL, method=method, train_size=100).score_matrix()
        except Exception:
            continue
        by_cell: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
        for d, c, sc, seed, ok in zip(sl.dataset.tolist(), sl.config.tolist(), sl.score.tolist(),
                                      sl.seed.tolist(), (~sl.failed).tolist(), strict=True):
            if ok and not math.isnan(sc):
                by_cell[(d, c)][int(seed)] = sc * 100
        pairs = {k: v for k, v in by_cell.items() if 0 in v and 1 in v}
        if not pairs:
            continue
        diffs = np.array([v[1] - v[0] for v in pairs.values()])
        datasets = sorted({d for d, _ in pairs})
        spread, rhos = [], []
        for d in datasets:
            col = grid.scores[:, grid.datasets.index(d)] * 100
            if (~np.isnan(col)).sum() > 2:
                spread.append(float(np.nanstd(col, ddof=1)))
            cfg = [c for (dd, c) in pairs if dd == d]
            if len(cfg) >= 3:
                rhos.append(_spearman(np.array([pairs[(d, c)][0] for c in cfg]),
                                      np.array([pairs[(d, c)][1] for c in cfg])))
        rows.append([method, f"{len(pairs)} ({len(datasets)} datasets)", pts(float(np.abs(diffs).mean())),
                     pts(float(np.abs(diffs).max())), pts(float(np.sqrt(np.mean(diffs ** 2)) / math.sqrt(2))),
                     pts(float(np.mean(spread))) if spread else "–",
                     f"{np.nanmean(rhos):+.2f}" if rhos else "–"])
    if not rows:
        return "### Seed-to-seed noise\n\nNot run yet."
    return ("### Seed-to-seed noise (train size 100)\n\n"
            "Pairs of runs of the same config on the same dataset with seeds 0 and 1 (seed 1 "
            "draws another training sample, example order, LoRA init and validation sample). "
            "Per-run noise = RMS of the difference / sqrt(2); for scale, the sd of the grid's "
            "configs within a dataset (seed 0, the same datasets); and the rank correlation "
            "(Spearman) of the re-run configs between the two seeds, mean over datasets.\n\n"
            + md_table(["method", "pairs", "mean abs diff", "max abs diff", "per-run sd", "sd across configs",
                        "Spearman seed 0 vs 1"], rows))


def _hp_level_key(v):
    """Numeric levels in numeric order, then the others; a zipped level sorts by its first value."""
    v = v[0] if isinstance(v, tuple) else v
    return (0, float(v), "") if isinstance(v, (int, float)) else (1, 0.0, str(v))


def _level_label(key) -> str:
    if isinstance(key, tuple):
        return "/".join(_num(x) for x in key)
    return _num(key) if isinstance(key, (int, float)) else str(key)


def hp_factors(mx) -> dict[str, list[str]]:
    """Factor name -> the HPs it sets; the LoRA grid steps r and alpha together (one factor)."""
    names = sorted({k for h in mx.hps for k in h} - {"max_seq_length", "precision", "method", "warmup_ratio"})
    if "lora_r" in names and "lora_alpha" in names:
        names = [n for n in names if n not in ("lora_r", "lora_alpha")] + ["lora_r/lora_alpha"]
    return {n: n.split("/") for n in names}


def _level_of(hps: dict, parts: list[str]):
    """A config's level of one factor: the HP's value, or a tuple for a zipped factor."""
    return hps[parts[0]] if len(parts) == 1 else tuple(hps[p] for p in parts)


def paired_steps(mx, parts: list[str]) -> list[tuple[str, str, np.ndarray]]:
    """Per step between adjacent levels of one factor: the score differences (points, high level
    minus low) of config pairs that differ in that factor only, over every dataset both ran."""
    by_rest: dict[frozenset, dict[object, int]] = defaultdict(dict)
    for i, h in enumerate(mx.hps):
        if all(p in h for p in parts):
            by_rest[frozenset((k, v) for k, v in h.items() if k not in parts)][_level_of(h, parts)] = i
    levels = sorted({k for g in by_rest.values() for k in g}, key=_hp_level_key)
    out = []
    for lo, hi in itertools.pairwise(levels):
        d = [mx.scores[g[hi]] - mx.scores[g[lo]] for g in by_rest.values() if lo in g and hi in g]
        if d:
            flat = np.concatenate(d) * 100
            out.append((_level_label(lo), _level_label(hi), flat[~np.isnan(flat)]))
    return out


def section_hp_effects(table) -> str:
    """Mean normalized score per level of each HP (per dataset over the configs at that level,
    then over datasets, so every dataset weighs the same); then paired differences."""
    rows, paired = [], []
    for method in ("lora", "full"):
        try:
            mx = table.slice(model=MODEL, method=method, train_size=100).score_matrix()
        except Exception:
            continue
        norm = normalize(mx)
        for hp, parts in hp_factors(mx).items():
            levels: dict[object, list[int]] = defaultdict(list)
            for i, h in enumerate(mx.hps):
                if all(p in h for p in parts):
                    levels[_level_of(h, parts)].append(i)
            if len(levels) < 2:
                continue
            cells = []
            for key, idx in sorted(levels.items(), key=lambda kv: _hp_level_key(kv[0])):
                per_d = _nanmean_rows(norm[idx].T)  # dataset -> mean over the level's configs
                cells.append(f"{_level_label(key)}: {np.nanmean(per_d):.2f}")
            rows.append([method, hp, ", ".join(cells)])
            for lo, hi, d in paired_steps(mx, parts):
                if len(d):
                    paired.append([method, hp, f"{lo} → {hi}", str(len(d)), f"{d.mean():+.1f}",
                                   pts(float(np.abs(d).mean())), f"{(d > 0).mean():.0%}"])
    text = ("### Effect of each HP (train size 100)\n\nMean normalized score (1 = best config of the "
            "dataset, 0 = worst) of the grid configs at each level: averaged per dataset, then over "
            "datasets. The LoRA grid steps r and alpha together.\n\n"
            + md_table(["method", "HP", "level: mean normalized score"], rows))
    if paired:
        text += ("\n\nPaired: configs that differ in this HP only, run with the same seed (same "
                 "training rows, order and validation rows), one pair per dataset. The LoRA grid is "
                 "a half fraction, so its two-level HPs never differ alone.\n\n"
                 + md_table(["method", "HP", "step", "pairs", "mean diff (points)", "mean abs diff",
                             "share where the step helps"], paired))
    return text


def section_cost(base: dict[str, dict[str, str]]) -> str:
    """Runs and CPU time per slice, from the table's runtime_s column (one process per run)."""
    import csv

    default_ids = {cid for ids in base.values() for cid in ids.values()}
    cost: dict[tuple[str, str, str, str], list[float]] = defaultdict(list)
    with TABLE.open(newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            kind = "classification" if r["dataset"] in CLASSIFICATION else r["dataset"]
            what = "seed 1" if r["seed"] == "1" else "tool defaults" if r["config_id"] in default_ids else "grid"
            cost[(r["method"], r["train_size"], kind, what)].append(float(r["runtime_s"] or "nan"))
    rows = [[m, s, k, w, str(len(v)), f"{np.nanmean(v):.0f}", f"{np.nansum(v) / 3600:.2f}"]
            for (m, s, k, w), v in sorted(cost.items(), key=lambda kv: (kv[0][0], int(kv[0][1]), *kv[0][2:]))]
    total = sum(np.nansum(v) for v in cost.values()) / 3600
    return ("### Cost\n\nWall time of each run in a worker process with one torch thread (two "
            f"workers on the two cores), so CPU hours ~ the sum: **{total:.1f} CPU hours** in "
            "all (runs killed at a chunk's end and run again are not counted).\n\n"
            + md_table(["method", "train size", "task", "runs of", "runs", "mean s/run", "CPU h"], rows))


def write_preset(table, slices) -> None:
    """Ship the recommendations of the slices ranked on 3 datasets or more (grid.csv holds whole
    cells only, see drop_incomplete_cells)."""
    recs = []
    shipped: set[tuple[str, str]] = set()
    for method, size in slices:
        path = OUT / f"recommend-{method}-{size}.yaml"
        mx = table.slice(model=MODEL, method=method, train_size=size).score_matrix()
        done = list(mx.datasets)
        if len(done) < 3:
            continue
        shipped.add((method, str(size)))
        if path.is_file():
            for r in yaml.safe_load(path.read_text())["recommendations"]:
                recs.append({"model": MODEL, "method": method, "train_size": size, "rank": r["rank"],
                             "config": r["config"],
                             "source": {"config_id": r.get("config_id"), "coverage": r.get("coverage"),
                                        "datasets": list(done), "n_configs": r["source"]["n_configs"]}})
    if not shipped:
        print("no slice is complete on 3 datasets yet: the shipped preset is left as it is", file=sys.stderr)
        return
    doc = {
        "schema": "staytuned.recommendations/v1",
        "source": {
            "id": "staytuned-smollm2-study",
            "title": "staytuned's own offline grid on SmolLM2-135M-Instruct (studies/smollm2)",
            "table": "studies/smollm2/results.csv",
            "table_file": PRESET_TABLE.name,
            "method": "CBS ranking (tol 1%) of the study grid's configs (seed 0) on the study's "
                      "datasets, per method and train size; each entry lists the datasets its "
                      "ranking saw",
            "generated": dt.date.today().isoformat(),
            "note": "measured on CPU in bf16 with max_seq_length 512; see the README section 'Our SmolLM2-135M study'",
        },
        "models": {MODEL: {"display": "SmolLM2-135M-Instruct",
                           "aliases": ["HuggingFaceTB/SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct",
                                       "smollm2-135m-instruct"]}},
        "recommendations": recs,
    }
    header = ("# Shipped recommendations measured by staytuned's own SmolLM2-135M study.\n"
              "# Written by studies/smollm2/analyze.py from studies/smollm2/results.csv: do not edit.\n")
    PRESET.write_text(header + yaml.safe_dump(doc, sort_keys=False, width=100), encoding="utf-8")
    import csv

    with GRID_TABLE.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols = [c for c in reader.fieldnames or [] if c in SHIPPED_COLUMNS or c.startswith("hp_")]
        rows = [{c: r[c] for c in cols} for r in reader if (r["method"], r["train_size"]) in shipped]
    cols = [c for c in cols if any(r[c] != "" for r in rows)]  # HPs of unshipped slices only
    rows = [{c: r[c] for c in cols} for r in rows]
    with PRESET_TABLE.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=cols)
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    import argparse

    global TABLE, OUT, GRID_TABLE, PRESET, PRESET_TABLE
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", type=Path, default=HERE / "grid.db", help="the study's storage")
    ap.add_argument("--into", type=Path, help="write every output under this folder instead (a dry run)")
    args = ap.parse_args()
    results_md = HERE / "RESULTS.md"
    if args.into is not None:
        args.into.mkdir(parents=True, exist_ok=True)
        TABLE, OUT, results_md = args.into / "results.csv", args.into / "analysis", args.into / "RESULTS.md"
        PRESET, PRESET_TABLE = args.into / PRESET.name, args.into / PRESET_TABLE.name
        GRID_TABLE = OUT / GRID_TABLE.name
    st("results", "export", f"sqlite:///{args.db.resolve()}", "-o", str(TABLE))
    full_table = load_results(TABLE)
    partial = write_grid_table()
    table = load_results(GRID_TABLE)
    base = defaults()
    have = {(m, int(s)) for m, s in zip(table.method.tolist(), table.train_size.tolist(), strict=True)}
    # CBS ranks and ships the size-100 grid only: size 1000 re-runs 1-2 picked configs per
    # dataset, a comparison (section_sizes), not a grid to rank.
    slices = [(m, 100) for m in ("lora", "full")
              if (m, 100) in have and len(set(table.slice(method=m, train_size=100).dataset.tolist())) >= 2]
    run_commands(slices)
    n_runs = len(full_table)
    parts = [
        "# SmolLM2-135M study: results\n",
        f"Generated by `studies/smollm2/analyze.py` on {dt.date.today().isoformat()} from "
        f"`results.csv` ({n_runs} runs)."
        + (f" Still running, so left out of every table built on the grid: {', '.join(partial)}."
           if partial else "")
        + "\n",
        section_loo(table, full_table, slices, base),
        section_loo_picks(table, slices),
        section_methods(table, full_table, base),
        section_sizes(table),
        section_noise(full_table, table),
        section_hp_effects(table),
        section_cost(base),
    ]
    results_md.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    write_preset(table, slices)
    print(f"{results_md} and {PRESET} written ({n_runs} runs)", file=sys.stderr)


if __name__ == "__main__":
    main()
