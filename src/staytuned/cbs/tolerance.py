"""``--tol auto``: choose CBS's coverage tolerance by leave-one-out on the offline datasets.

Numpy only. For each candidate tolerance, CBS ranks the configs on all datasets but one and
the held-out dataset scores its best-of-top-k normalized score (:func:`~staytuned.cbs.evaluate`
with the same matrix choosing and scoring); the objective is the mean over k = 1..``k``
(default 3) of those leave-one-out curves: tuning runs a handful of trials, so the first few
ranks are what a tolerance must get right, and the mean over k weighs the first pick as much
as the next ones. Highest objective wins; ties go to the candidate nearest 1% (CBS's default),
then to the smaller one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from staytuned.cbs.ranking import check_tolerance
from staytuned.errors import InputError
from staytuned.results import ScoreMatrix

__all__ = ["TOL_CANDIDATES", "TolChoice", "choose_tolerance", "parse_tol"]

TOL_CANDIDATES: tuple[float, ...] = (0.0, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.10)
_DEFAULT = 0.01


@dataclass(frozen=True)
class TolChoice:
    """The chosen tolerance and the leave-one-out objective of every candidate."""

    tol: float
    candidates: tuple[float, ...]
    scores: tuple[float, ...]  # mean over k = 1..k of leave-one-out mean best-of-k
    k: int
    scheme: str  # "leave-one-dataset-out" | "leave-one-group-out"

    def to_dict(self) -> dict[str, Any]:
        return {
            "tol": self.tol,
            "objective": f"mean over k=1..{self.k} of {self.scheme} mean best-of-k normalized score",
            "candidates": [{"tol": t, "score": s} for t, s in zip(self.candidates, self.scores, strict=True)],
        }


def choose_tolerance(matrix: ScoreMatrix, *, candidates: Sequence[float] = TOL_CANDIDATES, k: int = 3,
                     groups: Mapping[str, str] | Sequence[str] | None = None) -> TolChoice:
    """The candidate tolerance whose CBS ranking generalizes best to a held-out dataset (or
    group, with ``groups``) of ``matrix``; see the module docstring for the objective."""
    from staytuned.cbs.evaluation import evaluate

    cands = tuple(float(c) for c in candidates)
    if not cands:
        raise InputError("no candidate tolerance", field="candidates", expected="at least one tolerance")
    for c in cands:
        check_tolerance(c, None)
    if k < 1:
        raise InputError("k must be positive", field="k", value=k, expected="an integer >= 1")
    if matrix.shape[1] < 2:
        raise InputError("tol auto needs at least two datasets (a leave-one-out)", field="tol",
                         value=f"{matrix.shape[1]} dataset", expected=">= 2 datasets, or a number")
    scores = []
    scheme = ""
    for c in cands:
        ev = evaluate(matrix, tol=c, k=k, groups=groups, methods=["cbs"])
        curve = ev.methods["cbs"].mean_best_of_k
        scheme = ev.scheme
        scores.append(float(sum(curve) / len(curve)) if curve and not any(map(math.isnan, curve)) else -math.inf)
    best = max(scores)
    tied = [c for c, s in zip(cands, scores, strict=True) if s >= best - 1e-12]
    chosen = min(tied, key=lambda c: (abs(c - _DEFAULT), c))
    return TolChoice(tol=chosen, candidates=cands, scores=tuple(scores), k=k, scheme=scheme)


def parse_tol(text: str | float) -> float | str:
    """A ``--tol`` value: ``"auto"`` or a relative tolerance in [0, 1); :class:`InputError`
    naming ``tol`` otherwise."""
    if isinstance(text, str) and text.strip().lower() == "auto":
        return "auto"
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise InputError("not a tolerance", field="tol", value=text,
                         expected="a number with 0 <= tol < 1 (e.g. 0.01 = 1%) or 'auto'") from None
    check_tolerance(value, None)
    return value
