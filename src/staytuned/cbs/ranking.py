"""Coverage-based Search (Halfon et al., 2024, arXiv 2407.18990): coverage and the greedy ranking.

Numpy only. Everything works on a :class:`staytuned.results.ScoreMatrix` (configs x datasets).

* :func:`normalize`: per dataset, 1 = best result, 0 = worst (failed cells count as the worst),
  NaN = missing.
* :func:`covers`: config c covers dataset d when its score is within ``tol`` (relative, default
  1%) or ``abs_tol`` of the best on d. Failed and missing cells never cover.
* :func:`rank`: greedy. Repeatedly take the config covering the most not-yet-covered datasets;
  ties -> higher mean normalized score over the datasets it has, then natural id order (c2 < c10).
  When every dataset is covered, or no config adds coverage, a new round starts over all
  datasets with the remaining configs; configs that cover nothing at a round's start follow in
  tie-break order. Cost: O(n*m) per round plus O(n) per pick, so 10,000 x 1,000 ranks in seconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from staytuned.errors import InputError
from staytuned.results import ScoreMatrix, natural_rank

__all__ = [
    "RankStep",
    "Ranking",
    "build_steps",
    "check_rank_input",
    "check_tolerance",
    "covers",
    "greedy_order",
    "mean_rows",
    "normalize",
    "rank",
    "tiebreak_order",
]


def check_tolerance(tol: float, abs_tol: float | None) -> None:
    """:class:`InputError` naming ``tol`` or ``abs_tol`` when either is out of range."""
    if not (isinstance(tol, int | float) and math.isfinite(tol) and 0 <= tol < 1):
        raise InputError("relative tolerance out of range", field="tol", value=tol,
                         expected="0 <= tol < 1 (e.g. 0.01 = 1%)")
    if abs_tol is not None and not (math.isfinite(abs_tol) and abs_tol >= 0):
        raise InputError("absolute tolerance out of range", field="abs_tol", value=abs_tol,
                         expected="a finite number >= 0")


def normalize(matrix: ScoreMatrix) -> np.ndarray:
    """Per-dataset normalized scores of ``matrix`` (configs x datasets).

    ``(s - worst_d) / (best_d - worst_d)`` over the successful cells of dataset ``d``, mirrored
    for ``"min"`` datasets, so 1.0 is the best and 0.0 the worst result on ``d``. Failed cells
    get 0.0 (the worst); missing cells (never run) stay NaN. Where all successful cells of a
    dataset are equal they all get 1.0.
    """
    signed = matrix.signed
    with np.errstate(invalid="ignore", divide="ignore"):
        best = _col_nanmax(signed)
        worst = -_col_nanmax(-signed)
        span = best - worst
        norm = (signed - worst) / np.where(span > 0, span, 1.0)
        norm = np.where(span > 0, norm, np.where(np.isnan(signed), np.nan, 1.0))
    return np.where(matrix.failed, 0.0, norm)


def covers(matrix: ScoreMatrix, tol: float = 0.01, abs_tol: float | None = None) -> np.ndarray:
    """Bool configs x datasets: the config is within ``tol`` relative, or ``abs_tol``, of the best.

    Relative: ``s >= best - tol*|best|`` for "max" datasets, ``s <= best + tol*|best|`` for
    "min". Failed and missing cells never cover. A 1e-12 slack absorbs float rounding.
    """
    check_tolerance(tol, abs_tol)
    signed = matrix.signed
    best = _col_nanmax(signed)
    slack = np.abs(best) * tol if abs_tol is None else np.full_like(best, abs_tol)
    slack = slack + 1e-12 * np.maximum(1.0, np.abs(best))
    with np.errstate(invalid="ignore"):
        out: np.ndarray = signed >= (best - slack)[None, :]
    return out


def _col_nanmax(a: np.ndarray) -> np.ndarray:
    """Column max ignoring NaN; NaN for all-NaN columns (without numpy's warning)."""
    filled = np.where(np.isnan(a), -np.inf, a)
    out = filled.max(axis=0) if a.shape[0] else np.full(a.shape[1], -np.inf)
    return np.where(np.isneginf(out) & np.isnan(a).all(axis=0), np.nan, out)


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
    method: str = "cbs"  # the ranker (staytuned.cbs.portfolios.RANKERS)

    @property
    def config_ids(self) -> list[str]:
        return [s.config_id for s in self.steps]

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
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


def tiebreak_order(mean_norm: np.ndarray, config_ids: Sequence[str] | np.ndarray) -> np.ndarray:
    """Config indices by mean normalized score (desc, NaN last), then natural id order.

    ``config_ids``: the ids, or their :func:`natural_rank` (an int array) when precomputed.
    """
    if isinstance(config_ids, np.ndarray) and config_ids.dtype.kind in "iu":
        nat = config_ids
    else:
        nat = natural_rank([str(c) for c in config_ids])
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


def mean_rows(a: np.ndarray) -> np.ndarray:
    """Row means ignoring NaN; NaN for all-NaN rows (without numpy's warning)."""
    cnt = (~np.isnan(a)).sum(axis=1)
    tot = np.where(np.isnan(a), 0.0, a).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)


def check_rank_input(matrix: ScoreMatrix, k: int | None) -> int:
    """The number of picks to make (``k`` or every config); :class:`InputError` on an empty
    matrix or a non-positive ``k``."""
    n, m = matrix.shape
    if n == 0 or m == 0:
        raise InputError("nothing to rank", value=f"{n} configs x {m} datasets",
                         expected="at least one config and one dataset")
    if k is not None and k < 1:
        raise InputError("k must be positive", field="k", value=k, expected="an integer >= 1")
    return n if k is None else min(k, n)


def build_steps(matrix: ScoreMatrix, order: np.ndarray, rounds: np.ndarray, cov: np.ndarray,
                norm: np.ndarray, mean_norm: np.ndarray) -> list[RankStep]:
    """The :class:`RankStep` of each pick of ``order`` (row indices, with their ``rounds``):
    ``new_datasets`` = datasets it covers that no earlier pick of its round covers; coverage and
    best-of-k are cumulative over the whole prefix, whatever the ranker."""
    m = matrix.shape[1]
    steps = []
    ever = np.zeros(m, bool)
    in_round = np.zeros(m, bool)
    best = np.full(m, -np.inf)
    prev_round = int(rounds[0]) if len(rounds) else 1
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
    return steps


def rank(matrix: ScoreMatrix, tol: float = 0.01, abs_tol: float | None = None, k: int | None = None) -> Ranking:
    """Greedy CBS ranking of ``matrix``'s configs, the first ``k`` (default all).

    ``tol``: relative tolerance (0.01 = within 1% of the best); ``abs_tol``: absolute one
    (overrides ``tol``). See the module docstring for the exact rule and tie-breaks.
    """
    check_tolerance(tol, abs_tol)
    n = matrix.shape[0]
    kk = check_rank_input(matrix, k)
    cov = covers(matrix, tol, abs_tol)
    norm = normalize(matrix)
    mean_norm = mean_rows(norm)
    tb = tiebreak_order(mean_norm, natural_rank(matrix.config_ids))
    order, rounds = greedy_order(cov, tb, kk)
    steps = build_steps(matrix, order, rounds, cov, norm, mean_norm)
    return Ranking(
        steps=tuple(steps),
        order=order,
        datasets=matrix.datasets,
        tol=tol,
        abs_tol=abs_tol,
        n_configs=n,
        notes=matrix.notes,
    )
