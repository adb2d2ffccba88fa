"""What each report section shows, computed once and drawn twice (plotly for HTML, matplotlib for PNG).

Every builder returns either its panel dataclass or a :class:`Skip` saying why the section does
not apply, so the page can say so instead of leaving the section out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from staytuned.report.runs import ReportInput, Run
from staytuned.results import natural_key


@dataclass(frozen=True)
class Skip:
    """A section that does not apply, and why."""

    reason: str


@dataclass(frozen=True)
class CoveragePanel:
    """CBS ranking (coverage table) and leave-one-out best-of-top-k curves for one slice."""

    label: str
    datasets: tuple[str, ...]
    rows: list[dict[str, Any]]  # rank, config_id, hps, new_datasets, covered, coverage, mean_best_of_k
    k: list[int]
    curves: dict[str, list[float]]  # method -> mean best-of-top-k
    solved: dict[str, list[float]]
    tol: float
    scheme: str | None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImportancePanel:
    """fANOVA importances (sum to 1) of the HPs for the (per-dataset normalized) score."""

    importances: dict[str, float]
    target: str
    n_trials: int  # runs the forest was fitted on
    n_total: int = 0  # successful runs available (more than n_trials when sampled)


@dataclass(frozen=True)
class HeatmapPanel:
    """Mean score of one dataset over a grid of two HPs (binned when continuous)."""

    dataset: str
    x_name: str
    y_name: str
    x_labels: list[str]
    y_labels: list[str]
    z: list[list[float | None]]  # [y][x]; None = no run in that cell
    counts: list[list[int]]
    direction: str


@dataclass(frozen=True)
class ParallelPanel:
    """One line per successful run over the HPs and the score."""

    dimensions: list[dict[str, Any]]  # {name, values (float), ticks: [(value, label)] | None}
    color: list[float]
    color_name: str


@dataclass(frozen=True)
class HistoryPanel:
    """Objective value by trial number, with the best so far, per dataset of one study."""

    study: str
    direction: str
    series: dict[str, dict[str, list[float]]]  # dataset -> {number, value, best}


@dataclass(frozen=True)
class ParetoPanel:
    """The first two objectives of a multi-objective study, Pareto-optimal trials marked."""

    study: str
    names: tuple[str, str]
    directions: tuple[str, str]
    points: list[dict[str, Any]]  # number, x, y, pareto (bool), params


@dataclass(frozen=True)
class FailedPanel:
    runs: list[Run]
    total: int


# --------------------------------------------------------------------------- helpers
def primary_runs(inp: ReportInput) -> list[int]:
    """Indices of the successful runs the HP plots describe.

    Single-objective (training) runs when there are any: a storage may also hold decoding
    studies, whose parameters and objectives are a different space (they get the Pareto
    section). Otherwise the successful runs of multi-objective studies, by their first objective.
    """
    ok = [i for i, r in enumerate(inp.runs) if r.status == "ok" and math.isfinite(r.score)]
    single = [i for i in ok if _single_objective(inp.runs[i])]
    training = [i for i in single if inp.runs[i].kind != "decode"]
    return training or single or ok


def _single_objective(run: Run) -> bool:
    return run.values is None or len(run.values) == 1


def normalized_scores(inp: ReportInput) -> dict[int, float]:
    """Run index -> score scaled to [0, 1] within its dataset (1 = best), for pooling datasets."""
    by_ds: dict[str, list[int]] = {}
    for i in primary_runs(inp):
        by_ds.setdefault(inp.runs[i].dataset, []).append(i)
    out: dict[int, float] = {}
    for ds, idx in by_ds.items():
        vals = np.array([inp.runs[i].score for i in idx])
        if inp.directions.get(ds, "max") == "min":
            vals = -vals
        lo, hi = vals.min(), vals.max()
        for i, v in zip(idx, vals, strict=True):
            out[i] = float((v - lo) / (hi - lo)) if hi > lo else 1.0
    return out


def varying_params(runs: Sequence[Run]) -> list[str]:
    """HP names that take more than one value among ``runs`` (constants tell nothing)."""
    seen: dict[str, set] = {}
    for r in runs:
        for k, v in r.params.items():
            seen.setdefault(k, set()).add(repr(v))
    return sorted(k for k, v in seen.items() if len(v) > 1)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))


# --------------------------------------------------------------------------- importance
#: fANOVA's random forest grows superlinearly with the runs (~10 s for 1,000 on 2 cores); a
#: seeded sample of this many keeps big studies interactive.
FANOVA_MAX_RUNS = 1000


def importance_panel(inp: ReportInput, seed: int = 0, max_runs: int = FANOVA_MAX_RUNS) -> ImportancePanel | Skip:
    """Optuna's fANOVA importances, computed on an in-memory study of the successful runs.

    With several datasets the target is the per-dataset normalized score (raw scores of
    different datasets are not comparable); with one dataset it is the raw score.
    """
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    norm = normalized_scores(inp)
    ok = [(i, inp.runs[i]) for i in sorted(norm)]
    multi_ds = len({r.dataset for _, r in ok}) > 1
    # Conditional HPs (lora_r only for LoRA runs) split runs into spaces: use the largest one.
    spaces: dict[frozenset, list[tuple[int, Run]]] = {}
    for i, r in ok:
        spaces.setdefault(frozenset(r.params), []).append((i, r))
    if spaces:
        ok = max(spaces.values(), key=len)
    names = varying_params([r for _, r in ok])
    if len(ok) < 3:
        return Skip(f"HP importance needs at least 3 successful runs ({len(ok)} here)")
    if not names:
        return Skip("no hyperparameter varies between the successful runs")
    dists: dict[str, Any] = {}
    for n in names:
        vals = [r.params[n] for _, r in ok if n in r.params]
        if all(_is_num(v) for v in vals):
            lo, hi = float(min(vals)), float(max(vals))
            dists[n] = FloatDistribution(lo, hi, log=lo > 0 and hi / lo >= 100)
        else:
            dists[n] = CategoricalDistribution(sorted({str(v) for v in vals}))
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" line per report
    try:
        study = optuna.create_study(direction="maximize")
    finally:
        optuna.logging.set_verbosity(level)
    trials = []
    for i, r in ok:
        if any(n not in r.params for n in names):
            continue  # conditional HPs (e.g. lora_r of full runs) would need a different space
        params = {n: float(r.params[n]) if isinstance(dists[n], FloatDistribution) else str(r.params[n])
                  for n in names}
        value = norm[i] if multi_ds else (r.score if inp.directions.get(r.dataset, "max") == "max" else -r.score)
        trials.append(optuna.trial.create_trial(params=params, distributions=dists, value=value))
    if len(trials) < 3:
        return Skip("fewer than 3 successful runs define every varying hyperparameter")
    n_total = len(trials)
    if n_total > max_runs:
        import random

        trials = random.Random(seed).sample(trials, max_runs)
    study.add_trials(trials)
    try:
        imp = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=seed), normalize=True)
    except ImportError:  # fANOVA's random forest is scikit-learn's
        return Skip("HP importance (fANOVA) needs scikit-learn: pip install 'staytuned[report]'")
    target = "normalized score (1 = best of its dataset)" if multi_ds else "score"
    return ImportancePanel(importances={k: float(v) for k, v in imp.items()}, target=target,
                           n_trials=len(trials), n_total=n_total)


# --------------------------------------------------------------------------- heatmaps
def _axis_bins(values: list[Any], max_bins: int = 8) -> tuple[list[str], Any]:
    """Labels and a value -> label-index function; few distinct values stay categories."""
    distinct = sorted({v for v in values}, key=lambda v: (not _is_num(v), v if _is_num(v) else str(v)))
    if len(distinct) <= max_bins or not all(_is_num(v) for v in distinct):
        labels = [_fmt(v) for v in distinct]
        pos = {repr(v): i for i, v in enumerate(distinct)}
        return labels, lambda v: pos[repr(v)]
    arr = np.array([float(v) for v in values])
    log = arr.min() > 0 and arr.max() / arr.min() >= 100
    t = np.log10(arr) if log else arr
    edges = np.quantile(t, np.linspace(0, 1, max_bins + 1))
    edges = np.unique(edges)
    back = (lambda e: 10**e) if log else (lambda e: e)
    labels = [f"{_fmt(back(edges[i]))}–{_fmt(back(edges[i + 1]))}" for i in range(len(edges) - 1)]

    def index(v: Any) -> int:
        x = math.log10(float(v)) if log else float(v)
        return min(int(np.searchsorted(edges, x, side="right")) - 1, len(labels) - 1)

    return labels, index


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def heatmap_panels(inp: ReportInput, importance: ImportancePanel | Skip) -> list[HeatmapPanel] | Skip:
    """Per dataset, mean score over the two most important HPs (else the first two varying)."""
    ok = [inp.runs[i] for i in primary_runs(inp)]
    names = varying_params(ok)
    if len(names) < 2:
        return Skip("heatmaps need two hyperparameters that vary between successful runs "
                    f"(varying here: {', '.join(names) or 'none'})")
    if isinstance(importance, ImportancePanel):
        ranked = ([n for n in importance.importances if n in names]
                  + [n for n in names if n not in importance.importances])
    else:
        ranked = names
    x_name, y_name = ranked[0], ranked[1]
    panels = []
    for ds in sorted({r.dataset for r in ok}, key=natural_key):
        runs = [r for r in ok if r.dataset == ds and x_name in r.params and y_name in r.params]
        if not runs:
            continue
        xl, xi = _axis_bins([r.params[x_name] for r in runs])
        yl, yi = _axis_bins([r.params[y_name] for r in runs])
        sums = np.zeros((len(yl), len(xl)))
        counts = np.zeros((len(yl), len(xl)), dtype=int)
        for r in runs:
            a, b = yi(r.params[y_name]), xi(r.params[x_name])
            sums[a, b] += r.score
            counts[a, b] += 1
        z = [[float(sums[a, b] / counts[a, b]) if counts[a, b] else None for b in range(len(xl))]
             for a in range(len(yl))]
        panels.append(HeatmapPanel(dataset=ds, x_name=x_name, y_name=y_name, x_labels=xl, y_labels=yl,
                                   z=z, counts=counts.tolist(), direction=inp.directions.get(ds, "max")))
    return panels or Skip("no dataset has successful runs with both hyperparameters")


# --------------------------------------------------------------------------- parallel coordinates
def parallel_panel(inp: ReportInput, max_dims: int = 8) -> ParallelPanel | Skip:
    ok_idx = primary_runs(inp)
    ok = [inp.runs[i] for i in ok_idx]
    names = varying_params(ok)[:max_dims]
    if not names or len(ok) < 2:
        return Skip("parallel coordinates need at least 2 successful runs and one varying hyperparameter")
    multi = len({r.dataset for r in ok}) > 1
    norm = normalized_scores(inp)
    dims: list[dict[str, Any]] = []
    for n in names:
        vals = [r.params.get(n) for r in ok]
        present = [v for v in vals if v is not None]
        if all(_is_num(v) for v in present):
            nums = [float(v) if v is not None else math.nan for v in vals]
            log = min(present) > 0 and max(present) / min(present) >= 100
            if log:
                dims.append({"name": f"log10({n})", "values": [math.log10(v) if v == v else math.nan for v in nums],
                             "ticks": None})
            else:
                dims.append({"name": n, "values": nums, "ticks": None})
        else:
            cats = sorted({str(v) for v in present})
            pos = {c: i for i, c in enumerate(cats)}
            dims.append({"name": n, "values": [float(pos[str(v)]) if v is not None else math.nan for v in vals],
                         "ticks": [(float(i), c) for i, c in enumerate(cats)]})
    color = [norm[i] for i in ok_idx] if multi else [r.score for r in ok]
    cname = "normalized score" if multi else "score"
    dims.append({"name": cname, "values": color, "ticks": None})
    return ParallelPanel(dimensions=dims, color=color, color_name=cname)


# --------------------------------------------------------------------------- history
def history_panels(inp: ReportInput) -> list[HistoryPanel] | Skip:
    if inp.kind != "storage":
        return Skip("a results table has no trial order; optimization history needs an Optuna storage")
    panels = []
    for info in inp.studies:
        if len(info.directions) != 1:
            continue  # multi-objective studies are shown as a Pareto front
        d = info.directions[0]
        series: dict[str, dict[str, list[float]]] = {}
        runs = sorted(((r.number, r) for r in inp.runs
                       if r.study == info.name and r.status == "ok" and r.number is not None), key=lambda p: p[0])
        for number, r in runs:
            s = series.setdefault(r.dataset, {"number": [], "value": [], "best": []})
            best = s["best"][-1] if s["best"] else r.score
            best = max(best, r.score) if d == "max" else min(best, r.score)
            s["number"].append(float(number))
            s["value"].append(r.score)
            s["best"].append(best)
        if series:
            panels.append(HistoryPanel(study=info.name, direction=d, series=series))
    return panels or Skip("no single-objective study has a finished trial")


# --------------------------------------------------------------------------- pareto
def pareto_panels(inp: ReportInput) -> list[ParetoPanel] | Skip:
    """Pareto fronts: multi-objective studies (first two objectives), and decoding studies
    (primary score against each secondary objective stored in the trials' ``metrics``)."""
    from staytuned.decoding.objective import SECONDARY

    panels = []
    for info in inp.studies:
        runs = [r for r in inp.runs if r.study == info.name and r.status == "ok" and r.values]
        if len(info.directions) >= 2:
            pairs = [((info.objective_names[0], info.directions[0]), (info.objective_names[1], info.directions[1]),
                      [(r, r.values[0], r.values[1]) for r in runs if r.values is not None and len(r.values) >= 2])]
        elif info.kind == "decode":
            pairs = [((info.objective_names[0], info.directions[0]), (name, d),
                      [(r, r.score, float(r.metrics[name])) for r in runs
                       if _is_num(r.metrics.get(name))])
                     for name, d in SECONDARY.items()]
        else:
            continue
        for (xn, xd), (yn, yd), pts in pairs:
            if len(pts) < 2:
                continue
            front = set(_front([(x, y) for _, x, y in pts], [xd, yd]))
            panels.append(ParetoPanel(
                study=info.name, names=(xn, yn), directions=(xd, yd),
                points=[{"number": r.number, "x": x, "y": y, "pareto": i in front, "params": r.params}
                        for i, (r, x, y) in enumerate(pts)],
            ))
    if panels:
        return panels
    if any(s.kind == "decode" or len(s.directions) >= 2 for s in inp.studies):
        return Skip("the decoding studies here have fewer than 2 finished trials with secondary objectives")
    if inp.kind == "storage":
        return Skip("no decoding or multi-objective study in this storage")
    return Skip("a results table has one score per run; the Pareto front needs a decoding study "
                "(or a multi-objective study) in an Optuna storage")


def _front(points: list[tuple[float, float]], directions: list[str]) -> list[int]:
    from staytuned.decoding.tune import pareto_front

    return pareto_front(points, directions)


# --------------------------------------------------------------------------- failures
def failed_panel(inp: ReportInput, limit: int = 200) -> FailedPanel | Skip:
    failed = [r for r in inp.runs if r.status in ("failed", "pruned")]
    if not failed:
        return Skip(f"no failed or pruned runs: all {len(inp.runs)} runs finished")
    return FailedPanel(runs=failed[:limit], total=len(failed))


# --------------------------------------------------------------------------- CBS
def coverage_panels(inp: ReportInput, tol: float = 0.01, k: int = 10) -> list[CoveragePanel] | Skip:
    """CBS ranking and leave-one-dataset-out evaluation, per model/method/train-size slice."""
    from staytuned.cbs import evaluate, rank
    from staytuned.errors import InputError

    table = inp.table
    if table is None:
        return Skip("no single-objective runs to rank")
    if len(table.datasets) < 2:
        return Skip(f"CBS needs results on at least 2 datasets (here: {', '.join(table.datasets) or 'none'})")
    axes = [a for a in ("model", "method", "train_size") if len(table.values(a)) > 1]
    combos: list[dict[str, str]] = [{}]
    for a in axes:
        combos = [{**c, a: v} for c in combos for v in table.values(a)]
    panels, skipped = [], []
    for combo in combos[:6]:  # a report, not a dump: the first slices only
        label = ", ".join(f"{a}={v}" for a, v in combo.items()) or "all runs"
        try:
            part = table.slice(**combo) if combo else table
            dirs = {inp.directions.get(d, "max") for d in part.datasets}
            direction = dirs.pop() if len(dirs) == 1 else None
            # As `staytuned cbs`: rank on Dev and score on Test when X-Dev/X-Test pairs exist
            # (or on the test-score column), else on every dataset.
            matrix, ranked_on = part.choose_matrix("auto", direction=direction)
            ranking = rank(matrix, tol=tol, k=min(k, matrix.shape[0]))
            choose, scoring, how = part.eval_matrices("auto", "auto", direction=direction)
            ev = evaluate(choose, scoring, tol=tol, k=min(k, choose.shape[0])) if choose.shape[1] >= 2 else None
        except InputError as exc:
            skipped.append(f"{label}: {exc}")
            continue
        rows = [{"rank": s.rank, "config_id": s.config_id, "hps": s.hps, "new_datasets": list(s.new_datasets),
                 "covered": s.covered, "coverage": s.coverage, "mean_best_of_k": s.mean_best_of_k}
                for s in ranking.steps]
        panels.append(CoveragePanel(
            label=label, datasets=matrix.datasets, rows=rows,
            k=ev.k if ev else [], curves={m: c.mean_best_of_k for m, c in ev.methods.items()} if ev else {},
            solved={m: c.solved_fraction for m, c in ev.methods.items()} if ev else {},
            tol=tol, scheme=ev.scheme if ev else None,
            notes=tuple(n for n in dict.fromkeys((f"ranked on {ranked_on}; evaluation: {how}", *matrix.notes,
                                                  *(ev.notes if ev else ()), *skipped)) if n not in inp.notes),
        ))
    return panels or Skip("; ".join(skipped) or "no slice with two datasets")


@dataclass(frozen=True)
class Panels:
    """Every section of a report, computed."""

    coverage: list[CoveragePanel] | Skip
    importance: ImportancePanel | Skip
    heatmaps: list[HeatmapPanel] | Skip
    parallel: ParallelPanel | Skip
    history: list[HistoryPanel] | Skip
    pareto: list[ParetoPanel] | Skip
    failed: FailedPanel | Skip


def build_panels(inp: ReportInput, *, tol: float = 0.01, k: int = 10, seed: int = 0,
                 on_step: Any = None) -> Panels:
    """Compute every section; ``on_step(name)`` is called before each (for progress bars)."""
    step = on_step or (lambda name: None)
    step("CBS coverage")
    coverage = coverage_panels(inp, tol=tol, k=k)
    step("HP importance (fANOVA)")
    importance = importance_panel(inp, seed=seed)
    step("heatmaps")
    heatmaps = heatmap_panels(inp, importance)
    step("parallel coordinates")
    parallel = parallel_panel(inp)
    step("history and Pareto front")
    history = history_panels(inp)
    pareto = pareto_panels(inp)
    failed = failed_panel(inp)
    return Panels(coverage=coverage, importance=importance, heatmaps=heatmaps, parallel=parallel,
                  history=history, pareto=pareto, failed=failed)
