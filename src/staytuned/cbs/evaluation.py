"""Leave-one-out evaluation of CBS next to the portfolio, best-average, random, default and
oracle baselines.

:func:`evaluate`: leave-one-dataset-out (or leave-one-group-out): rank on the other datasets
with the *choose* matrix, score the held-out one on the *score* matrix (e.g. Dev vs Test) by
best-of-top-k normalized score and "solved" (best-of-top-k covers it), for k = 1..K. The
``zeroshot`` and ``greedy-portfolio`` baselines are :func:`staytuned.cbs.portfolios.rank_by`'s
rankers, built on the same training datasets of each fold.

``tol="auto"``: each fold's CBS uses the tolerance :func:`~staytuned.cbs.tolerance.choose_tolerance`
picks by an inner leave-one-out on that fold's training datasets only (nested, so the held-out
dataset never helps choose); "solved" then keeps the default 1% definition.

Best-of-top-k on a dataset skips configs missing on it (the k-th config *with a result* there).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from staytuned.cbs.portfolios import portfolio_order, scaled_ranks
from staytuned.cbs.ranking import (
    check_tolerance,
    covers,
    greedy_order,
    normalize,
    tiebreak_order,
)
from staytuned.errors import InputError
from staytuned.results import ScoreMatrix, natural_key, natural_rank

__all__ = ["METHODS", "Evaluation", "MethodCurve", "evaluate"]

METHODS = ("cbs", "zeroshot", "greedy-portfolio", "best-average", "random", "default", "oracle")
AUTO = "auto"  # tol: chosen per fold by an inner leave-one-out


@dataclass(frozen=True)
class MethodCurve:
    """Mean best-of-top-k normalized score and solved fraction over held-out datasets, k = 1..K."""

    name: str
    mean_best_of_k: list[float]
    solved_fraction: list[float]
    n_datasets: int  # held-out datasets that count (e.g. default config missing -> fewer)


@dataclass(frozen=True)
class Evaluation:
    """Result of :func:`evaluate`. ``per_dataset[method]`` is (held-out datasets x K)."""

    scheme: str  # "leave-one-dataset-out" | "leave-one-group-out"
    k: list[int]
    methods: dict[str, MethodCurve]
    held_out: tuple[str, ...]
    per_dataset: dict[str, np.ndarray]
    per_dataset_solved: dict[str, np.ndarray]
    tol: float
    abs_tol: float | None
    random: str  # "exact" or "<N> permutations"
    default_config: str | None = None
    notes: tuple[str, ...] = ()
    paired: bool = False  # choose and score matrices differ
    tol_per_fold: dict[str, float] | None = None  # tol="auto": CBS's tolerance in each fold

    def to_dict(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme,
            "k": self.k,
            "methods": {
                name: {
                    "mean_best_of_k": c.mean_best_of_k,
                    "solved_fraction": c.solved_fraction,
                    "n_datasets": c.n_datasets,
                }
                for name, c in self.methods.items()
            },
            "held_out": list(self.held_out),
            "per_dataset": {
                name: {d: [None if math.isnan(v) else float(v) for v in row]
                       for d, row in zip(self.held_out, arr.tolist(), strict=True)}
                for name, arr in self.per_dataset.items()
            },
            "settings": {
                "tol": "auto" if self.tol_per_fold is not None else self.tol,
                **({"solved_tol": self.tol, "tol_per_fold": self.tol_per_fold}
                   if self.tol_per_fold is not None else {}),
                "abs_tol": self.abs_tol,
                "random": self.random,
                "default_config": self.default_config,
                "choose_and_score_differ": self.paired,
            },
            "notes": list(self.notes),
        }

    def rows(self) -> list[dict[str, Any]]:
        """Long rows (method, k, mean_best_of_k, solved_fraction) for CSV."""
        return [
            {"method": name, "k": k, "mean_best_of_k": c.mean_best_of_k[i], "solved_fraction": c.solved_fraction[i]}
            for name, c in self.methods.items()
            for i, k in enumerate(self.k)
        ]


def _prefix_best(vals: np.ndarray, solved: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
    """Best-of-top-k and solved-by-k for k=1..K from values in ranked order (padded with the last)."""
    out_v = np.full(K, np.nan)
    out_s = np.zeros(K)
    if len(vals) == 0:
        return out_v, out_s
    v = np.maximum.accumulate(vals[:K])
    s = np.logical_or.accumulate(solved[:K]).astype(float)
    out_v[: len(v)] = v
    out_s[: len(s)] = s
    out_v[len(v):] = v[-1]
    out_s[len(s):] = s[-1]
    return out_v, out_s


def _random_exact(vals: np.ndarray, solved: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact expected best-of-top-k and P(solved by k) for a uniformly random order.

    With values sorted ascending v_(1..n): P(max of a random k-subset <= v_(i)) = C(i,k)/C(n,k).
    """
    n = len(vals)
    ev, ps = np.full(K, np.nan), np.zeros(K)
    if n == 0:
        return ev, ps
    v = np.sort(vals)
    s = int(solved.sum())
    lf = _log_factorials(n)  # lf[x] = log(x!)
    i = np.arange(1, n + 1)
    for k in range(1, K + 1):
        kk = min(k, n)
        # log C(i, kk) - log C(n, kk) for i >= kk
        logf = lf[i] - lf[np.maximum(i - kk, 0)] - (lf[n] - lf[n - kk])
        cdf = np.where(i >= kk, np.exp(np.minimum(logf, 0.0)), 0.0)
        ev[k - 1] = float((np.diff(np.r_[0.0, cdf]) * v).sum())
        # P(no solver among kk random picks) = C(n-s, kk) / C(n, kk)
        ps[k - 1] = 1.0 if n - s < kk else 1.0 - math.exp(lf[n - s] - lf[n - s - kk] - lf[n] + lf[n - kk])
    return ev, ps


def _log_factorials(n: int) -> np.ndarray:
    out: np.ndarray = np.r_[0.0, np.cumsum(np.log(np.arange(1, n + 1, dtype=float)))]
    return out


def _random_perms(
    vals: np.ndarray, solved: np.ndarray, K: int, perms: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Mean best-of-top-k and solved-by-k over ``perms`` seeded random orders."""
    n = len(vals)
    if n == 0:
        return np.full(K, np.nan), np.zeros(K)
    acc_v, acc_s = np.zeros(K), np.zeros(K)
    for _ in range(perms):
        p = rng.permutation(n)
        v, s = _prefix_best(vals[p], solved[p], K)
        acc_v += v
        acc_s += s
    return acc_v / perms, acc_s / perms


def evaluate(
    choose: ScoreMatrix,
    score: ScoreMatrix | None = None,
    *,
    groups: Mapping[str, str] | Sequence[str] | None = None,
    tol: float | str = 0.01,
    abs_tol: float | None = None,
    k: int = 10,
    default_config: str | None = None,
    random_perms: int = 0,
    seed: int = 0,
    methods: Sequence[str] | None = None,
    on_fold: Callable[[int, int], None] | None = None,
) -> Evaluation:
    """Leave-one-dataset-out (``groups`` None) or leave-one-group-out evaluation of CBS.

    ``choose`` ranks (e.g. Dev scores); ``score`` (same configs and datasets, e.g. Test scores;
    default ``choose``) scores the held-out datasets. ``groups``: dataset -> group (or one label
    per dataset, in ``choose.datasets`` order). ``tol``: CBS's tolerance, or ``"auto"`` (chosen
    per fold, see the module docstring). ``default_config``: a config id or HP assignment
    (``lr=1e-4,epochs=3``) shown as a fixed baseline. ``random_perms`` 0 = exact expectation,
    else the mean over that many seeded random orders. ``methods``: the curves to compute
    (default every one of :data:`METHODS`; "default" needs ``default_config``).
    ``on_fold(done, total)`` is called after each held-out fold (for progress bars).
    """
    auto = tol == AUTO
    solve_tol = 0.01 if auto else tol
    if auto and abs_tol is not None:
        raise InputError("tol auto chooses a relative tolerance; it cannot go with an absolute one",
                         field="tol", value="auto", expected="a number with abs_tol, or auto without it")
    if not auto and not isinstance(tol, int | float):
        raise InputError("relative tolerance out of range", field="tol", value=tol,
                         expected="0 <= tol < 1 (e.g. 0.01 = 1%) or 'auto'")
    assert isinstance(solve_tol, int | float)
    check_tolerance(solve_tol, abs_tol)
    score = choose if score is None else score
    if choose.config_ids != score.config_ids or choose.datasets != score.datasets:
        raise InputError("the choose and score matrices must have the same configs and datasets",
                         expected="matrices from ResultsTable.paired_matrices() or test_matrices()")
    n, m = choose.shape
    if m < 2:
        raise InputError("leave-one-out needs at least two datasets", value=m, expected=">= 2 datasets")
    if auto and m < 3:
        raise InputError("tol auto needs at least three datasets (an inner leave-one-out in each fold)",
                         field="tol", value=m, expected=">= 3 datasets, or a number")
    if k < 1:
        raise InputError("k must be positive", field="k", value=k, expected="an integer >= 1")
    if random_perms < 0:
        raise InputError("random permutations must be >= 0", field="random_perms", value=random_perms,
                         expected="0 (exact expectation) or a positive count")
    wanted = list(METHODS) if methods is None else list(dict.fromkeys(methods))
    unknown = [x for x in wanted if x not in METHODS]
    if unknown:
        raise InputError("unknown evaluation method", field="methods", value=unknown,
                         expected="some of " + ", ".join(METHODS))
    K = min(k, n)
    if groups is None:
        labels = list(choose.datasets)
        scheme = "leave-one-dataset-out"
    else:
        if isinstance(groups, Mapping):
            missing = [d for d in choose.datasets if d not in groups]
            if missing:
                raise InputError("datasets without a group", field="groups", value=missing[:5],
                                 expected="a group for every dataset")
            labels = [str(groups[d]) for d in choose.datasets]
        else:
            labels = [str(g) for g in groups]
            if len(labels) != m:
                raise InputError("one group per dataset expected", field="groups", value=len(labels), expected=str(m))
        if len(set(labels)) < 2:
            raise InputError("leave-one-group-out needs at least two groups", field="groups",
                             value=sorted(set(labels)), expected=">= 2 groups")
        if auto and len(set(labels)) < 3:
            raise InputError("tol auto needs at least three groups (an inner leave-one-group-out)",
                             field="tol", value=sorted(set(labels)), expected=">= 3 groups, or a number")
        scheme = "leave-one-group-out"
    labels_arr = np.array(labels, dtype=object)

    norm_c = normalize(choose)
    cov_by_tol: dict[float, np.ndarray] = {}

    def cov_c(t: float) -> np.ndarray:
        if t not in cov_by_tol:
            cov_by_tol[t] = covers(choose, t, abs_tol)
        return cov_by_tol[t]

    if score is choose:
        cov_s, norm_s = cov_c(solve_tol), norm_c
    else:
        cov_s, norm_s = covers(score, solve_tol, abs_tol), normalize(score)
    avail_s = ~np.isnan(norm_s)  # failed cells are available (normalized 0); missing are not
    have_c = ~np.isnan(norm_c)
    sum_c = np.where(have_c, norm_c, 0.0)
    tot_sum, tot_cnt = sum_c.sum(axis=1), have_c.sum(axis=1)
    default_idx = None if default_config is None else choose.config_index(default_config)
    rng = np.random.default_rng(seed)
    nat = natural_rank(choose.config_ids)
    # Portfolio values: ranks and normalized scores are per dataset, so leaving a dataset out
    # just drops its column.
    values = {}
    if "zeroshot" in wanted:
        values["zeroshot"] = np.nan_to_num(1.0 - scaled_ranks(choose), nan=0.0)
    if "greedy-portfolio" in wanted:
        values["greedy-portfolio"] = np.nan_to_num(norm_c, nan=0.0)

    names = [x for x in METHODS if x in wanted and (x != "default" or default_idx is not None)]
    per = {nm: np.full((m, K), np.nan) for nm in names}
    per_s = {nm: np.full((m, K), np.nan) for nm in names}
    notes = list(dict.fromkeys((*choose.notes, *score.notes)))
    folds = sorted(set(labels), key=natural_key)
    fold_tol: dict[str, float] = {}
    for fold_no, g in enumerate(folds, start=1):
        held = np.flatnonzero(labels_arr == g)
        train = np.flatnonzero(labels_arr != g)
        with np.errstate(invalid="ignore", divide="ignore"):
            cnt = tot_cnt - have_c[:, held].sum(axis=1)
            mean_tr = np.where(cnt > 0, (tot_sum - sum_c[:, held].sum(axis=1)) / np.maximum(cnt, 1), np.nan)
        tb = tiebreak_order(mean_tr, nat)
        # Enough picks that K of them have a result on every held-out dataset.
        need = min(n, K + int((~avail_s[:, held]).sum(axis=0).max()))
        orders: dict[str, np.ndarray] = {"best-average": tb}
        if "cbs" in names:
            t = solve_tol
            if auto:
                from staytuned.cbs.tolerance import choose_tolerance

                inner = choose.subset(datasets=train)
                t = choose_tolerance(inner, groups=None if groups is None else labels_arr[train].tolist()).tol
                fold_tol[str(g)] = t
            orders["cbs"], _ = greedy_order(cov_c(t)[:, train], tb, need)
        for nm, val in values.items():
            orders[nm], _ = portfolio_order(val[:, train], tb, need)
        for d in held.tolist():
            ok = avail_s[:, d]
            if not ok.any():
                continue
            for nm, ordering in orders.items():
                if nm not in per:
                    continue
                o = ordering[ok[ordering]]
                per[nm][d], per_s[nm][d] = _prefix_best(norm_s[o, d], cov_s[o, d], K)
            vals, solv = norm_s[ok, d], cov_s[ok, d]
            if "random" in per:
                if random_perms:
                    per["random"][d], per_s["random"][d] = _random_perms(vals, solv, K, random_perms, rng)
                else:
                    per["random"][d], per_s["random"][d] = _random_exact(vals, solv, K)
            if "default" in per and default_idx is not None and ok[default_idx]:
                per["default"][d] = norm_s[default_idx, d]
                per_s["default"][d] = float(cov_s[default_idx, d])
            if "oracle" in per:
                per["oracle"][d] = 1.0
                per_s["oracle"][d] = 1.0
        if on_fold is not None:
            on_fold(fold_no, len(folds))
    counted = avail_s.any(axis=0)
    if not counted.all():
        notes.append(f"{int((~counted).sum())} held-out datasets have no scores at all and are not counted")
    curves: dict[str, MethodCurve] = {}
    for nm in names:
        rows = ~np.isnan(per[nm][:, 0])
        if nm == "default" and rows.sum() < counted.sum():
            notes.append(f"default config {default_config!r} has no score on {int(counted.sum() - rows.sum())} "
                         "held-out datasets; its means are over the others")
        curves[nm] = MethodCurve(
            name=nm,
            mean_best_of_k=[float(x) for x in per[nm][rows].mean(axis=0)] if rows.any() else [math.nan] * K,
            solved_fraction=[float(x) for x in per_s[nm][rows].mean(axis=0)] if rows.any() else [math.nan] * K,
            n_datasets=int(rows.sum()),
        )
    return Evaluation(
        scheme=scheme,
        k=list(range(1, K + 1)),
        methods=curves,
        held_out=choose.datasets,
        per_dataset=per,
        per_dataset_solved=per_s,
        tol=float(solve_tol),
        abs_tol=abs_tol,
        random="exact" if not random_perms else f"{random_perms} permutations",
        default_config=None if default_idx is None else choose.config_ids[default_idx],
        notes=tuple(notes),
        paired=score is not choose,
        tol_per_fold=fold_tol if auto else None,
    )
