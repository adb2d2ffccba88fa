"""Portfolio rankers next to CBS: one entry point, :func:`rank_by`, for every ranking method.

Numpy only. Every method returns a :class:`~staytuned.cbs.ranking.Ranking` with the same fields
as CBS's (coverage and best-of-k filled the same way), so tables and reports work unchanged.

* ``cbs``: :func:`staytuned.cbs.ranking.rank` (greedy coverage).
* ``zeroshot``: zero-shot portfolio by rank (Wistuba et al. 2015; TabRepo's ``zeroshot_configs``).
  Greedily add the config that most lowers the mean over datasets of the best (lowest) rank the
  portfolio reaches on that dataset.
* ``greedy-portfolio``: greedy portfolio by normalized score (Auto-sklearn 2.0). Greedily add
  the config that most raises the mean over datasets of the best normalized score
  (:func:`~staytuned.cbs.ranking.normalize`, CBS's) the portfolio reaches.
* ``best-average``: configs by mean normalized score (CBS's :func:`tiebreak_order`).

Ranks (zeroshot): within each dataset over the configs with a result there, ties averaged,
best = 1; a failed cell ranks below every successful one (failed cells tie among themselves).
A rank r among the n_d configs with a result on dataset d is scaled to (r - 1) / (n_d - 1), so
0 = best and 1 = worst on every dataset whatever its number of missing cells, and every dataset
weighs the same. A missing cell (never run) contributes nothing: a portfolio reaches a dataset
only through members with a result there, and a dataset no member reaches counts as the worst
(1). Greedy-portfolio likewise counts a missing cell as the worst normalized score (0), the
value of a dataset the empty portfolio reaches.

Both portfolio greedies maximize sum_d max_{c in P} v[c, d] with v >= 0 (v = 1 - scaled rank,
or the normalized score), a monotone submodular function, so each prefix is within 1 - 1/e of
the best portfolio of its size. Ties in gain (within 1e-9 relative) go to the earlier config of
:func:`tiebreak_order` (mean normalized score, then natural id order), as in CBS; gains below
1e-9 count as none. When no remaining config adds anything, a new *round* starts from the empty
portfolio over the remaining configs (as CBS starts a new coverage round), so a full ranking
is a sequence of portfolios; configs that add nothing at a round's start follow in tie-break
order. ``round`` is that round number (always 1 for best-average), and ``new_datasets`` are,
for every method, the datasets the config covers (CBS's ``tol`` rule) that no earlier config of
its round covers.

Cost: O(n*m) per round, then per pick O(n) plus O(m) for each config whose gain must be
recomputed (lazy greedy: stale gains are upper bounds, as the objective is submodular).
"""

from __future__ import annotations

import numpy as np

from staytuned.cbs.ranking import (
    Ranking,
    build_steps,
    check_rank_input,
    check_tolerance,
    covers,
    mean_rows,
    normalize,
    rank,
    tiebreak_order,
)
from staytuned.errors import InputError
from staytuned.results import ScoreMatrix, natural_rank

__all__ = ["RANKERS", "check_ranker", "portfolio_order", "rank_by", "scaled_ranks"]

RANKERS: tuple[str, ...] = ("cbs", "zeroshot", "greedy-portfolio", "best-average")

_EPS = 1e-9  # relative: gains closer than this tie; gains below it count as none


def check_ranker(method: str) -> str:
    """``method`` when it is one of :data:`RANKERS`, else :class:`InputError` naming ``method``."""
    if method not in RANKERS:
        raise InputError("unknown ranking method", field="method", value=method,
                         expected="one of " + ", ".join(RANKERS))
    return method


def rank_by(matrix: ScoreMatrix, method: str = "cbs", *, tol: float = 0.01,
            abs_tol: float | None = None, k: int | None = None) -> Ranking:
    """Rank ``matrix``'s configs with ``method`` (one of :data:`RANKERS`), the first ``k``.

    ``tol``/``abs_tol``: CBS's coverage tolerance; the other methods use it only for the
    coverage fields of the steps. See the module docstring for each method's rule.
    """
    check_ranker(method)
    if method == "cbs":
        return rank(matrix, tol=tol, abs_tol=abs_tol, k=k)
    check_tolerance(tol, abs_tol)
    kk = check_rank_input(matrix, k)
    norm = normalize(matrix)
    mean_norm = mean_rows(norm)
    tb = tiebreak_order(mean_norm, natural_rank(matrix.config_ids))
    if method == "best-average":
        order = tb[:kk].astype(np.int64)
        rounds = np.ones(kk, dtype=np.int64)
    else:
        value = 1.0 - scaled_ranks(matrix) if method == "zeroshot" else norm
        order, rounds = portfolio_order(np.nan_to_num(value, nan=0.0), tb, kk)
    cov = covers(matrix, tol, abs_tol)
    return Ranking(
        steps=tuple(build_steps(matrix, order, rounds, cov, norm, mean_norm)),
        order=order,
        datasets=matrix.datasets,
        tol=tol,
        abs_tol=abs_tol,
        n_configs=matrix.shape[0],
        notes=matrix.notes,
        method=method,
    )


def scaled_ranks(matrix: ScoreMatrix) -> np.ndarray:
    """Per-dataset ranks scaled to [0, 1] (0 = best, ties averaged); NaN where missing.

    Failed cells rank below every successful one; see the module docstring.
    """
    n, m = matrix.shape
    # One row per dataset (contiguous sorts); sort key, lower = better: failed after every
    # success, missing (NaN) last of all.
    key = np.where(matrix.failed, np.inf, -matrix.signed).T.copy()
    order = np.argsort(key, axis=1, kind="stable")
    s = np.take_along_axis(key, order, axis=1)
    pos = np.broadcast_to(np.arange(n), (m, n))
    # Tie groups along each sorted row: first and last position of each run of equal keys.
    starts = np.ones((m, n), bool)
    starts[:, 1:] = s[:, 1:] != s[:, :-1]  # NaN != NaN: missing cells never join a group
    ends = np.ones((m, n), bool)
    ends[:, :-1] = starts[:, 1:]
    first = np.maximum.accumulate(np.where(starts, pos, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, pos, n)[:, ::-1], axis=1)[:, ::-1]
    n_d = (~matrix.missing).sum(axis=0)
    scaled_sorted = (first + last) / (2.0 * np.maximum(n_d - 1, 1))[:, None]  # mean 0-based rank
    out = np.empty((m, n))
    np.put_along_axis(out, order, scaled_sorted, axis=1)
    out = out.T.copy()
    out[matrix.missing] = np.nan
    return out


def portfolio_order(value: np.ndarray, tiebreak: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy portfolio of the rows of ``value`` (n x m, >= 0, no NaN), first ``k`` picks.

    Each pick most raises sum_d max over the round's picks of value[., d] (from 0 at a round's
    start); ``tiebreak``: row indices best first. Returns (picked rows, round of each pick).

    Lazy greedy: a row's gain only shrinks as the portfolio grows (the objective is
    submodular), so gains computed at an earlier pick are upper bounds. Each pick recomputes,
    exactly and from scratch, only the rows whose bound could still win, until every row within
    the tie margin of the best bound is up to date.
    """
    n, m = value.shape
    k = min(k, n)
    prio = np.empty(n, dtype=np.int64)
    prio[tiebreak] = np.arange(n)  # lower = better in ties
    alive = np.ones(n, bool)
    order: list[int] = []
    rounds: list[int] = []
    rnd = 1
    best = np.zeros(m)
    bound = value.sum(axis=1)
    exact = np.ones(n, bool)  # bound is the gain for the current portfolio
    fresh = True  # no pick yet in this round
    while len(order) < k:
        batch = 8
        while True:
            g = np.where(alive, bound, -np.inf)
            top = float(g.max())
            window = g >= top - _EPS * max(1.0, top)
            stale = np.flatnonzero(window & ~exact)
            if len(stale) == 0:
                break
            # Refresh the window's stale rows and the next-best stale bounds, twice as many
            # each round trip: few numpy calls however many rows turn out to need it.
            extra = np.flatnonzero(alive & ~exact & ~window)
            if len(extra) > batch:
                extra = extra[np.argpartition(-bound[extra], batch)[:batch]]
            batch *= 2
            rows = np.concatenate([stale, extra])
            bound[rows] = np.maximum(value[rows] - best[None, :], 0.0).sum(axis=1)
            exact[rows] = True
        if top <= _EPS:
            if fresh:  # nothing left adds anything: the rest in tie-break order
                rest = [int(i) for i in tiebreak if alive[i]][: k - len(order)]
                order += rest
                rounds += [rnd] * len(rest)
                break
            best = np.zeros(m)
            bound = value.sum(axis=1)
            exact[:] = True
            fresh, rnd = True, rnd + 1
            continue
        tied = np.flatnonzero(window & alive)
        c = int(tied[np.argmin(prio[tied])])
        best = np.maximum(best, value[c])
        exact[:] = False
        alive[c] = False
        order.append(c)
        rounds.append(rnd)
        fresh = False
    return np.array(order, dtype=np.int64), np.array(rounds, dtype=np.int64)
