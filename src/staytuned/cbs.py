"""Coverage-based Search (Halfon et al., 2024, arXiv 2407.18990): rank, evaluate, baselines.

Numpy only. Everything works on a :class:`staytuned.results.ScoreMatrix` (configs x datasets).

* ``covers(c, d)``: score of c on d within ``tol`` (relative, default 1%) or ``abs_tol`` of the
  best on d. Failed and missing cells never cover.
* :func:`rank`: greedy. Repeatedly take the config covering the most not-yet-covered datasets;
  ties -> higher mean normalized score over the datasets it has, then natural id order (c2 < c10).
  When every dataset is covered, or no config adds coverage, a new round starts over all
  datasets with the remaining configs; configs that cover nothing at a round's start follow in
  tie-break order. Cost: O(n*m) per round plus O(n) per pick, so 10,000 x 1,000 ranks in seconds.
* :func:`evaluate`: leave-one-dataset-out (or leave-one-group-out): rank on the other datasets
  with the *choose* matrix, score the held-out one on the *score* matrix (e.g. Dev vs Test) by
  best-of-top-k normalized score and "solved" (best-of-top-k covers it), for k = 1..K, next to
  the best-average, random (exact expectation or permutations), default and oracle baselines.

Best-of-top-k on a dataset skips configs missing on it (the k-th config *with a result* there).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from staytuned.errors import InputError
from staytuned.results import ScoreMatrix, check_tolerance, natural_key

__all__ = [
    "Evaluation",
    "MethodCurve",
    "RankStep",
    "Ranking",
    "evaluate",
    "greedy_order",
    "natural_rank",
    "rank",
    "tiebreak_order",
]

METHODS = ("cbs", "best-average", "random", "default", "oracle")


@dataclass(frozen=True)
class RankStep:
    """One rank of a CBS ranking."""

    rank: int  # 1-based
    config_id: str
    hps: dict[str, Any]
    round: int  # 1 for the first pass over the datasets, 2 for the next ...
    new_datasets: tuple[str, ...]  # datasets it newly covers within its round
    covered: int  # datasets covered by at least one of the top `rank` configs
    coverage: float  # covered / number of datasets
    mean_best_of_k: float  # mean over datasets of the best normalized score among the top `rank`
    mean_normalized: float  # this config's own mean normalized score (the tie-breaker)


@dataclass(frozen=True)
class Ranking:
    """A CBS ranking: ``steps[i]`` is rank i+1; ``order`` holds row indices into the matrix."""

    steps: tuple[RankStep, ...]
    order: np.ndarray
    datasets: tuple[str, ...]
    tol: float
    abs_tol: float | None
    n_configs: int
    notes: tuple[str, ...] = ()

    @property
    def config_ids(self) -> list[str]:
        return [s.config_id for s in self.steps]

    def to_dict(self) -> dict[str, Any]:
        return {
            "tol": self.tol,
            "abs_tol": self.abs_tol,
            "n_configs": self.n_configs,
            "n_datasets": len(self.datasets),
            "datasets": list(self.datasets),
            "ranking": [
                {**asdict(s), "new_datasets": list(s.new_datasets)} for s in self.steps
            ],
            "notes": list(self.notes),
        }


def natural_rank(config_ids: Sequence[str]) -> np.ndarray:
    """Position of each id in natural sort order (``c2`` before ``c10``)."""
    nat = np.empty(len(config_ids), dtype=np.int64)
    nat[sorted(range(len(config_ids)), key=lambda i: natural_key(config_ids[i]))] = np.arange(len(config_ids))
    return nat


def tiebreak_order(mean_norm: np.ndarray, config_ids: Sequence[str] | np.ndarray) -> np.ndarray:
    """Config indices by mean normalized score (desc, NaN last), then natural id order.

    ``config_ids``: the ids, or their :func:`natural_rank` (an int array) when precomputed.
    """
    nat = config_ids if isinstance(config_ids, np.ndarray) and config_ids.dtype.kind in "iu" else natural_rank(config_ids)
    key = np.where(np.isnan(mean_norm), np.inf, -mean_norm)
    return np.lexsort((nat, key))


def greedy_order(cov: np.ndarray, tiebreak: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The greedy coverage order of the rows of a bool ``cov`` (n x m), first ``k`` picks.

    ``tiebreak``: row indices best first (ties in gain go to the earlier row there).
    Returns (picked row indices, round number of each pick). Vectorized: the gain of every row
    is kept up to date by subtracting the columns each pick newly covers.
    """
    n, m = cov.shape
    k = min(k, n)
    prio = np.empty(n, dtype=np.int64)
    prio[tiebreak] = np.arange(n - 1, -1, -1)  # higher = better in ties
    cov_t = np.ascontiguousarray(cov.T, dtype=np.int32)  # rows = datasets: fast gathers per pick
    gain0 = cov.sum(axis=1, dtype=np.int64)
    gain = gain0.copy()
    uncovered = np.ones(m, bool)
    fresh = True  # no pick yet in this round
    alive = np.ones(n, bool)
    dead = np.int64(-1)
    order: list[int] = []
    rounds: list[int] = []
    rnd = 1
    while len(order) < k:
        key = np.where(alive, gain * n + prio, dead)
        c = int(key.argmax())
        if gain[c] == 0:
            if fresh:  # no remaining config covers anything: the rest in tie-break order
                rest = [int(i) for i in tiebreak if alive[i]][: k - len(order)]
                order += rest
                rounds += [rnd] * len(rest)
                break
            uncovered[:] = True
            gain = gain0.copy()
            fresh, rnd = True, rnd + 1
            continue
        new = np.flatnonzero(uncovered & cov[c])
        uncovered[new] = False
        left = np.flatnonzero(uncovered)
        # Update the gains the cheaper way: subtract the newly covered columns, or recount the
        # few still uncovered ones (a round closing costs nothing, so all-tied tables stay fast).
        if len(left) == 0:
            gain = np.zeros(n, dtype=np.int64)
        elif len(new) <= len(left):
            gain -= cov_t[new].sum(axis=0, dtype=np.int64)
        else:
            gain = cov_t[left].sum(axis=0, dtype=np.int64)
        alive[c] = False
        order.append(c)
        rounds.append(rnd)
        fresh = False
    return np.array(order, dtype=np.int64), np.array(rounds, dtype=np.int64)


def _mean_rows(a: np.ndarray) -> np.ndarray:
    cnt = (~np.isnan(a)).sum(axis=1)
    tot = np.where(np.isnan(a), 0.0, a).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)


def rank(matrix: ScoreMatrix, tol: float = 0.01, abs_tol: float | None = None, k: int | None = None) -> Ranking:
    """Greedy CBS ranking of ``matrix``'s configs, the first ``k`` (default all).

    ``tol``: relative tolerance (0.01 = within 1% of the best); ``abs_tol``: absolute one
    (overrides ``tol``). See the module docstring for the exact rule and tie-breaks.
    """
    check_tolerance(tol, abs_tol)
    n, m = matrix.shape
    if n == 0 or m == 0:
        raise InputError("nothing to rank", value=f"{n} configs x {m} datasets", expected="at least one config and one dataset")
    if k is not None and k < 1:
        raise InputError("k must be positive", field="k", value=k, expected="an integer >= 1")
    kk = n if k is None else min(k, n)
    cov = matrix.covers(tol, abs_tol)
    norm = matrix.normalized
    mean_norm = _mean_rows(norm)
    tb = tiebreak_order(mean_norm, matrix.natural_rank)
    order, rounds = greedy_order(cov, tb, kk)
    steps = []
    ever = np.zeros(m, bool)
    in_round = np.zeros(m, bool)
    best = np.full(m, -np.inf)
    prev_round = 1
    has_any = ~np.isnan(norm)
    seen_any = np.zeros(m, bool)
    for i, (c, r) in enumerate(zip(order.tolist(), rounds.tolist(), strict=True)):
        if r != prev_round:
            in_round[:] = False
            prev_round = r
        new = cov[c] & ~in_round
        in_round |= cov[c]
        ever |= cov[c]
        best = np.fmax(best, norm[c])  # NaN (missing) never wins
        seen_any |= has_any[c]
        mbk = float(best[seen_any].mean()) if seen_any.any() else math.nan
        steps.append(
            RankStep(
                rank=i + 1,
                config_id=matrix.config_ids[c],
                hps=dict(matrix.hps[c]),
                round=int(r),
                new_datasets=tuple(matrix.datasets[j] for j in np.flatnonzero(new)),
                covered=int(ever.sum()),
                coverage=float(ever.sum() / m),
                mean_best_of_k=mbk,
                mean_normalized=float(mean_norm[c]),
            )
        )
    return Ranking(
        steps=tuple(steps),
        order=order,
        datasets=matrix.datasets,
        tol=tol,
        abs_tol=abs_tol,
        n_configs=n,
        notes=matrix.notes,
    )


# ------------------------------------------------------------------------------------------
# Evaluation


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
    return np.r_[0.0, np.cumsum(np.log(np.arange(1, n + 1, dtype=float)))]




def _random_perms(vals: np.ndarray, solved: np.ndarray, K: int, perms: int, rng: np.random.Generator):
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
    per dataset; ``True``-ish use ``choose.groups``). ``default_config``: a config id or HP
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

    cov_c = choose.covers(tol, abs_tol)
    norm_c = choose.normalized
    cov_s = score.covers(tol, abs_tol)
    norm_s = score.normalized
    avail_s = ~np.isnan(norm_s)  # failed cells are available (normalized 0); missing are not
    have_c = ~np.isnan(norm_c)
    sum_c = np.where(have_c, norm_c, 0.0)
    tot_sum, tot_cnt = sum_c.sum(axis=1), have_c.sum(axis=1)
    default_idx = None if default_config is None else choose.config_index(default_config)
    rng = np.random.default_rng(seed)

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
        tb = tiebreak_order(mean_tr, choose.natural_rank)
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
