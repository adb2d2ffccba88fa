"""Leave-one-out evaluation of CBS next to the best-average, random, default and oracle baselines.

:func:`evaluate`: leave-one-dataset-out (or leave-one-group-out): rank on the other datasets
with the *choose* matrix, score the held-out one on the *score* matrix (e.g. Dev vs Test) by
best-of-top-k normalized score and "solved" (best-of-top-k covers it), for k = 1..K.

Best-of-top-k on a dataset skips configs missing on it (the k-th config *with a result* there).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

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

METHODS = ("cbs", "best-average", "random", "default", "oracle")


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
                "tol": self.tol,
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
    tol: float = 0.01,
    abs_tol: float | None = None,
    k: int = 10,
    default_config: str | None = None,
    random_perms: int = 0,
    seed: int = 0,
    on_fold: Callable[[int, int], None] | None = None,
) -> Evaluation:
    """Leave-one-dataset-out (``groups`` None) or leave-one-group-out evaluation of CBS.

    ``choose`` ranks (e.g. Dev scores); ``score`` (same configs and datasets, e.g. Test scores;
    default ``choose``) scores the held-out datasets. ``groups``: dataset -> group (or one label
    per dataset, in ``choose.datasets`` order). ``default_config``: a config id or HP
    assignment (``lr=1e-4,epochs=3``) shown as a fixed baseline. ``random_perms`` 0 = exact
    expectation, else the mean over that many seeded random orders. ``on_fold(done, total)``
    is called after each held-out fold (for progress bars).
    """
    check_tolerance(tol, abs_tol)
    score = choose if score is None else score
    if choose.config_ids != score.config_ids or choose.datasets != score.datasets:
        raise InputError("the choose and score matrices must have the same configs and datasets",
                         expected="matrices from ResultsTable.paired_matrices() or test_matrices()")
    n, m = choose.shape
    if m < 2:
        raise InputError("leave-one-out needs at least two datasets", value=m, expected=">= 2 datasets")
    if k < 1:
        raise InputError("k must be positive", field="k", value=k, expected="an integer >= 1")
    if random_perms < 0:
        raise InputError("random permutations must be >= 0", field="random_perms", value=random_perms,
                         expected="0 (exact expectation) or a positive count")
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
        scheme = "leave-one-group-out"
    labels_arr = np.array(labels, dtype=object)

    cov_c = covers(choose, tol, abs_tol)
    norm_c = normalize(choose)
    if score is choose:
        cov_s, norm_s = cov_c, norm_c
    else:
        cov_s, norm_s = covers(score, tol, abs_tol), normalize(score)
    avail_s = ~np.isnan(norm_s)  # failed cells are available (normalized 0); missing are not
    have_c = ~np.isnan(norm_c)
    sum_c = np.where(have_c, norm_c, 0.0)
    tot_sum, tot_cnt = sum_c.sum(axis=1), have_c.sum(axis=1)
    default_idx = None if default_config is None else choose.config_index(default_config)
    rng = np.random.default_rng(seed)
    nat = natural_rank(choose.config_ids)

    names = ["cbs", "best-average", "random"] + (["default"] if default_idx is not None else []) + ["oracle"]
    per = {nm: np.full((m, K), np.nan) for nm in names}
    per_s = {nm: np.full((m, K), np.nan) for nm in names}
    notes = list(dict.fromkeys((*choose.notes, *score.notes)))
    folds = sorted(set(labels), key=natural_key)
    for fold_no, g in enumerate(folds, start=1):
        held = np.flatnonzero(labels_arr == g)
        train = np.flatnonzero(labels_arr != g)
        with np.errstate(invalid="ignore", divide="ignore"):
            cnt = tot_cnt - have_c[:, held].sum(axis=1)
            mean_tr = np.where(cnt > 0, (tot_sum - sum_c[:, held].sum(axis=1)) / np.maximum(cnt, 1), np.nan)
        tb = tiebreak_order(mean_tr, nat)
        # Enough picks that K of them have a result on every held-out dataset.
        need = min(n, K + int((~avail_s[:, held]).sum(axis=0).max()))
        order, _ = greedy_order(cov_c[:, train], tb, need)
        for d in held.tolist():
            ok = avail_s[:, d]
            if not ok.any():
                continue
            for nm, ordering in (("cbs", order), ("best-average", tb)):
                o = ordering[ok[ordering]]
                per[nm][d], per_s[nm][d] = _prefix_best(norm_s[o, d], cov_s[o, d], K)
            vals, solv = norm_s[ok, d], cov_s[ok, d]
            if random_perms:
                per["random"][d], per_s["random"][d] = _random_perms(vals, solv, K, random_perms, rng)
            else:
                per["random"][d], per_s["random"][d] = _random_exact(vals, solv, K)
            if default_idx is not None and ok[default_idx]:
                per["default"][d] = norm_s[default_idx, d]
                per_s["default"][d] = float(cov_s[default_idx, d])
            per["oracle"][d] = 1.0
            per_s["oracle"][d] = 1.0
        if on_fold is not None:
            on_fold(fold_no, len(folds))
    counted = ~np.isnan(per["oracle"][:, 0])
    if not counted.all():
        notes.append(f"{int((~counted).sum())} held-out datasets have no scores at all and are not counted")
    methods: dict[str, MethodCurve] = {}
    for nm in names:
        rows = ~np.isnan(per[nm][:, 0])
        if nm == "default" and rows.sum() < counted.sum():
            notes.append(f"default config {default_config!r} has no score on {int(counted.sum() - rows.sum())} "
                         "held-out datasets; its means are over the others")
        methods[nm] = MethodCurve(
            name=nm,
            mean_best_of_k=[float(x) for x in per[nm][rows].mean(axis=0)] if rows.any() else [math.nan] * K,
            solved_fraction=[float(x) for x in per_s[nm][rows].mean(axis=0)] if rows.any() else [math.nan] * K,
            n_datasets=int(rows.sum()),
        )
    return Evaluation(
        scheme=scheme,
        k=list(range(1, K + 1)),
        methods=methods,
        held_out=choose.datasets,
        per_dataset=per,
        per_dataset_solved=per_s,
        tol=tol,
        abs_tol=abs_tol,
        random="exact" if not random_perms else f"{random_perms} permutations",
        default_config=None if default_idx is None else choose.config_ids[default_idx],
        notes=tuple(notes),
        paired=score is not choose,
    )
