"""A slow, obviously-correct reference of CBS (plain Python loops over dicts) for the tests."""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import pytest


def natkey(s: str) -> tuple:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", s) if p)


def ref_tables(scores: dict, configs: list, datasets: list, tol: float = 0.01, direction: str = "max"):
    """scores: {(config, dataset): float} ("failed" -> None); absent key = missing.

    Returns covers {c: set(d)}, norm {(c, d): float}, mean {c: float}.
    """
    sign = 1.0 if direction == "max" else -1.0
    covers = {c: set() for c in configs}
    norm = {}
    for d in datasets:
        vals = {c: sign * scores[(c, d)] for c in configs if (c, d) in scores and scores[(c, d)] is not None}
        if not vals:
            for c in configs:
                if (c, d) in scores:
                    norm[(c, d)] = 0.0
            continue
        best, worst = max(vals.values()), min(vals.values())
        for c in configs:
            if (c, d) not in scores:
                continue
            if scores[(c, d)] is None:
                norm[(c, d)] = 0.0
                continue
            v = vals[c]
            norm[(c, d)] = 1.0 if best == worst else (v - worst) / (best - worst)
            if v >= best - tol * abs(best) - 1e-12 * max(1.0, abs(best)):
                covers[c].add(d)
    mean = {}
    for c in configs:
        own = [norm[(c, d)] for d in datasets if (c, d) in norm]
        mean[c] = sum(own) / len(own) if own else -math.inf
    return covers, norm, mean


def ref_rank(covers: dict, mean: dict, configs: list, datasets: list) -> list[tuple[str, int]]:
    """Greedy coverage ranking, one pick at a time; returns [(config, round)]."""
    remaining = list(configs)
    order = []
    uncovered = set(datasets)
    rnd = 1
    fresh = True
    while remaining:
        gains = {c: len(covers[c] & uncovered) for c in remaining}
        if max(gains.values()) == 0:
            if fresh:
                for c in sorted(remaining, key=lambda c: (-mean[c], natkey(c))):
                    order.append((c, rnd))
                break
            uncovered = set(datasets)
            rnd += 1
            fresh = True
            continue
        pick = min(remaining, key=lambda c: (-gains[c], -mean[c], natkey(c)))
        order.append((pick, rnd))
        uncovered -= covers[pick]
        remaining.remove(pick)
        fresh = False
    return order


def ref_best_of_k(order: list, norm: dict, d: str, K: int) -> list[float]:
    vals = [norm[(c, d)] for c in order if (c, d) in norm]
    out, best = [], -math.inf
    for k in range(K):
        if k < len(vals):
            best = max(best, vals[k])
        out.append(best)
    return out


def ref_random(values: list[float], K: int) -> list[float]:
    """Exact E[max of a uniformly random k-subset] via P(max = v_(i)) = C(i-1, k-1) / C(n, k)."""
    v = sorted(values)
    n = len(v)
    out = []
    for k in range(1, K + 1):
        kk = min(k, n)
        out.append(sum(v[i - 1] * math.comb(i - 1, kk - 1) for i in range(1, n + 1)) / math.comb(n, kk))
    return out


def ref_random_solved(solved: list[bool], K: int) -> list[float]:
    n, s = len(solved), sum(solved)
    return [1 - math.comb(n - s, min(k, n)) / math.comb(n, min(k, n)) for k in range(1, K + 1)]


@pytest.fixture(scope="session")
def ref() -> SimpleNamespace:
    return SimpleNamespace(
        natkey=natkey, tables=ref_tables, rank=ref_rank, best_of_k=ref_best_of_k,
        random=ref_random, random_solved=ref_random_solved,
    )
