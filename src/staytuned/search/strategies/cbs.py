"""``cbs`` and ``cbs+tpe``: CBS-ranked configs enqueued first; and where CBS's offline knowledge
(a ranking, per-dataset scores) comes from: a results table or the shipped recommendations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from staytuned.errors import InputError
from staytuned.search.strategies.base import OfflineSource, close, strategy_class
from staytuned.search.strategies.random import Random
from staytuned.search.strategies.tpe import tpe_sampler

if TYPE_CHECKING:
    from staytuned.results import ColumnSpec
    from staytuned.search.space import SearchSpace
    from staytuned.search.strategies.planning import DistinctSampler


class CBS(Random):
    """The CBS-ranked configs in order (``study.enqueue_trial``); then, once the ranking is used
    up, as ``random`` (its sampler)."""

    name = "cbs"
    needs = "ranking"
    distinct = ("the ranked configs are enqueued once under the storage lock and each is claimed "
                "atomically by one trial; past the ranking, as random")

    def initial_queue(self, *, kind: str = "tune") -> list[dict[str, Any]]:
        return cbs_queue(self._offline(), self.space, self.context, self.ranked_first)

    @property
    def ranked_first(self) -> int:
        return self.n_trials


class CBSThenTPE(CBS):
    """CBS's top ``cbs_k`` enqueued first, then TPE, which sees their results."""

    name = "cbs+tpe"
    distinct = ("the ranked configs are enqueued once under the storage lock and each is claimed "
                "atomically by one trial; then as tpe")

    def sampler(self, *, storage_url: str | None = None) -> DistinctSampler:
        return self.guarded(tpe_sampler(self.seed, self.cbs_k), storage_url)

    @property
    def ranked_first(self) -> int:
        return min(self.cbs_k, self.n_trials)


# ------------------------------------------------------------------------------------------
# Offline sources


def offline_for(strategy: str, *, cbs_table: str | None = None, model: str | None = None,
                method: str | None = None, train_size: int | None = None) -> OfflineSource | None:
    """The offline source a strategy needs (None when it needs none): ``cbs_table`` when given;
    else for a ranking the shipped recommendations, for per-dataset scores the results table
    shipped with ``model``'s recommendations."""
    needs = strategy_class(strategy).needs
    if needs == "nothing":
        return None
    if cbs_table is not None:
        return offline_from_table(cbs_table, model=model, method=method, train_size=train_size)
    if needs == "ranking":
        return shipped_offline(model, method, train_size)
    from staytuned.cbs import resolve_model, shipped_table

    table = shipped_table(model)
    if table is None:
        raise InputError(f"{strategy} needs per-dataset scores from a results table",
                         field="cbs_table",
                         expected="a results table (e.g. `results export`); one ships "
                                  "only for the models of our own studies (smollm2-135m)")
    return offline_from_table(str(table), model=resolve_model(model) if model else None, method=method,
                              train_size=train_size)


def offline_from_table(path: str, *, model: str | None = None, method: str | None = None,
                       train_size: int | None = None, columns: ColumnSpec | None = None,
                       exclude_dataset: str | None = None, tol: float = 0.01) -> OfflineSource:
    """Rank a results table with CBS (the slice of this model/method/train size when it has one)."""
    from staytuned import cbs
    from staytuned.cbs.recommendations import STAND_INS
    from staytuned.results import load_results, nearest_size

    table = load_results(path, columns)
    kw: dict[str, Any] = {}
    for axis, want in (("model", model), ("method", method), ("train_size", train_size)):
        vals = table.values(axis)
        if len(vals) > 1 and axis == "train_size":
            kw[axis] = nearest_size([int(v) for v in vals], train_size)
        elif len(vals) > 1 and want is not None:
            if any(str(v) == str(want) for v in vals):
                kw[axis] = want
            elif axis == "method" and any(str(v) == STAND_INS.get(str(want)) for v in vals):
                kw[axis] = STAND_INS[str(want)]  # qlora without a grid of its own: LoRA's ranks configs
            else:  # another model's grid still ranks configs; prefer our method though
                kw[axis] = vals[0] if axis != "method" else want
    if kw:
        table = table.slice(**kw)
    if exclude_dataset is not None:
        keep = [d for d in table.datasets if d != exclude_dataset]
        table = table.slice(datasets=keep)
    matrix = table.score_matrix()
    ranking = cbs.rank(matrix, tol=tol)
    ranked = tuple(dict(step.hps) for step in ranking.steps)
    return OfflineSource(ranked=ranked, matrix=matrix, provenance=f"results table {path}")


def shipped_offline(model: str | None, method: str | None, train_size: int | None) -> OfflineSource:
    """The shipped recommendations as a ranked list, nearest slice first."""
    from staytuned.cbs import recommend
    from staytuned.results import nearest_size

    try:
        recs = recommend(model=model, method=method, train_size=train_size)
    except InputError:
        recs = recommend(method=method)  # another model's recommendations still rank configs
    chosen = list(recs.recommendations)
    sizes = [int(r.train_size) for r in chosen if r.train_size is not None]
    if train_size is None and len(set(sizes)) > 1:  # the whole train split: the largest size
        largest = nearest_size(sizes, None)
        chosen = [r for r in chosen if r.train_size == largest]
    ranked = tuple(dict(r.config) for r in sorted(chosen, key=lambda r: r.rank))
    return OfflineSource(ranked=ranked, matrix=None, provenance="shipped recommendations")


def project(config: Mapping[str, Any], space: SearchSpace,
            context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Map a recommended config into the space: fitting values kept, discrete ones snapped to
    the nearest choice, out-of-range numbers clipped; params it lacks are left to the sampler."""
    ctx = {**(context or {}), **space.fixed}
    out: dict[str, Any] = {}
    for p in space.params:
        if not p.active({**ctx, **out}):
            continue
        if p.name not in config or config[p.name] is None:
            continue
        v = config[p.name]
        if p.contains(v):
            if not p.continuous:  # the space's own spelling of the value (16 vs 16.0)
                out[p.name] = next(c for c in p.values if close(c, v))
            else:
                out[p.name] = int(round(float(v))) if p.type == "int" else float(v)
            continue
        if p.type == "categorical" and not all(isinstance(c, int | float) for c in p.values):
            continue  # a string not offered: let the sampler choose
        try:
            x = float(v)
        except (TypeError, ValueError):
            continue
        if not p.continuous:
            log = p.log or (x > 0 and min(p.values) > 0)
            out[p.name] = min(p.values, key=lambda c: _dist(float(c), x, log))
        else:
            low, high = p.bounds()
            clipped = min(max(x, low), high)
            out[p.name] = int(round(clipped)) if p.type == "int" else clipped
    return out


def _dist(a: float, b: float, log: bool) -> float:
    if log and a > 0 and b > 0:
        return float(abs(np.log(a) - np.log(b)))
    return abs(a - b)


def cbs_queue(offline: OfflineSource, space: SearchSpace, context: Mapping[str, Any] | None,
              limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` distinct ranked configs, as space params for ``enqueue_trial``."""
    out: list[dict[str, Any]] = []
    for cfg in offline.ranked:
        params = project(cfg, space, context)
        if params and params not in out:
            out.append(params)
        if len(out) >= limit:
            break
    return out
