"""Recommendations: the top-k HP configs of a model / method / train-size slice.

Two sources:

* the shipped recommendations in ``staytuned/presets/recommendations/*.yaml`` (with provenance;
  today the best configs reported by the Stay Tuned paper), and
* a results table: the slice is ranked with CBS (:func:`staytuned.cbs.rank`) and the first k
  configs are returned with their coverage.

Light module: numpy (through results and the ranking) at import; pyyaml inside the functions.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from staytuned._util.mapping import read_mapping
from staytuned.cbs.ranking import rank
from staytuned.errors import InputError
from staytuned.results import (
    ColumnSpec,
    ResultsTable,
    load_results,
    loose_key,
    natural_key,
    nearest_size,
)

__all__ = [
    "Recommendation",
    "RecommendationSet",
    "known_models",
    "match_model",
    "recommend",
    "resolve_model",
    "shipped_recommendations",
    "shipped_table",
]


@dataclass(frozen=True)
class Recommendation:
    """One recommended config. ``config`` uses TrainConfig HP names (batch_size = effective)."""

    model: str
    method: str | None
    train_size: int | None
    rank: int
    config: dict[str, Any]
    source: dict[str, Any] = field(default_factory=dict)  # provenance
    config_id: str | None = None
    coverage: float | None = None  # from a results table: cumulative coverage at this rank
    mean_best_of_k: float | None = None
    new_datasets: tuple[str, ...] = ()


@dataclass(frozen=True)
class RecommendationSet:
    """The answer of :func:`recommend`: recommendations plus where they come from."""

    recommendations: tuple[Recommendation, ...]
    origin: str  # "shipped" or the results table path
    notes: tuple[str, ...] = ()
    #: The method asked for when these are another method's recommendations standing in for it
    #: (qlora, where only LoRA was measured: the LoRA ones, with a note saying so).
    stand_in_for: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "origin": self.origin,
            "recommendations": [_rec_dict(r) for r in self.recommendations],
            "notes": list(self.notes),
        }
        if self.stand_in_for is not None:
            d["requested_method"] = self.stand_in_for
            d["shown_method"] = STAND_INS[self.stand_in_for]
        return d


#: A method without recommendations of its own -> the measured method shown in its place.
STAND_INS = {"qlora": "lora"}


def stand_in_note(method: str, where: str) -> str:
    """The note that says another method's recommendations stand in for ``method``."""
    shown = STAND_INS[method]
    return (f"no {method} recommendations {where}: showing the {shown} ones instead. QLoRA trains the same "
            "LoRA adapter on a 4-bit base, so they are a starting point measured with LoRA, not with "
            f"QLoRA (use them with method {method})")


def _rec_dict(r: Recommendation) -> dict[str, Any]:
    """Plain dict; the table-only fields are left out of shipped recommendations."""
    d = {**asdict(r), "new_datasets": list(r.new_datasets)}
    for key in ("config_id", "coverage", "mean_best_of_k", "new_datasets"):
        if d[key] in (None, []):
            del d[key]
    return d


def _preset_files(extra: Sequence[str | Path] = ()) -> list[tuple[str, dict[str, Any], Path]]:
    """(name for messages, parsed YAML document, folder that relative paths in it start from)."""
    root = importlib.resources.files("staytuned") / "presets" / "recommendations"
    files = [(f"staytuned/presets/recommendations/{p.name}", p, Path(str(root)))
             for p in sorted(root.iterdir(), key=lambda p: p.name) if p.name.endswith((".yaml", ".yml"))]
    files += [(str(p), Path(p), Path(p).parent) for p in extra]
    return [(name, read_mapping(p, what="recommendations file", name=name, allow_empty=True), folder)
            for name, p, folder in files]


def _load_presets(extra: Sequence[str | Path] = ()) -> tuple[dict[str, dict[str, Any]], list[Recommendation]]:
    models: dict[str, dict[str, Any]] = {}
    recs: list[Recommendation] = []
    for name, doc, _ in _preset_files(extra):
        source = dict(doc.get("source") or {})
        source.setdefault("file", name)
        for mname, info in (doc.get("models") or {}).items():
            entry = models.setdefault(mname, {"display": mname, "aliases": []})
            entry["display"] = (info or {}).get("display", entry["display"])
            entry["aliases"] = list(dict.fromkeys([*entry["aliases"], *((info or {}).get("aliases") or [])]))
        for i, r in enumerate(doc.get("recommendations") or []):
            if not isinstance(r, dict) or "model" not in r or not isinstance(r.get("config"), dict):
                raise InputError("bad recommendation entry", file=name, field=f"recommendations[{i}]",
                                 expected="a mapping with model, method, train_size, rank and config")
            models.setdefault(r["model"], {"display": r["model"], "aliases": []})
            recs.append(Recommendation(
                model=r["model"], method=r.get("method"), train_size=r.get("train_size"),
                rank=int(r.get("rank", 1)), config=dict(r["config"]), source=dict(source, **(r.get("source") or {})),
            ))
    return models, recs


def known_models(extra: Sequence[str | Path] = ()) -> dict[str, list[str]]:
    """Canonical model name -> aliases, for the shipped recommendations."""
    models, _ = _load_presets(extra)
    return {m: list(info["aliases"]) for m, info in models.items()}


def resolve_model(ref: str, extra: Sequence[str | Path] = ()) -> str | None:
    """Canonical shipped model name for ``ref`` (alias, hub id, any case), or None."""
    want = loose_key(ref, "model")
    for m, aliases in known_models(extra).items():
        if want in {loose_key(a, "model") for a in (m, *aliases)}:
            return m
    return None


def shipped_table(model: str | None, extra: Sequence[str | Path] = ()) -> Path | None:
    """The results table shipped with a model's recommendations (``source.table_file`` of its
    preset file, relative to that file), for strategies that need per-dataset scores; else None."""
    canon = resolve_model(model, extra) if model else None
    if canon is None:
        return None
    for _, doc, folder in _preset_files(extra)[::-1]:  # the user's extra files first
        table = (doc.get("source") or {}).get("table_file")
        if table and canon in (doc.get("models") or {}) and (folder / str(table)).is_file():
            return folder / str(table)
    return None


def shipped_recommendations(extra: Sequence[str | Path] = ()) -> list[Recommendation]:
    """Every shipped recommendation (plus those of ``extra`` YAML files)."""
    return _load_presets(extra)[1]


def recommend(
    table: str | Path | ResultsTable | None = None,
    *,
    model: str | None = None,
    method: str | None = None,
    train_size: int | None = None,
    k: int | None = None,
    tol: float | str = 0.01,
    abs_tol: float | None = None,
    columns: ColumnSpec | None = None,
    direction: str | Mapping[str, str] | None = None,
    agg: str = "mean",
    extra: Sequence[str | Path] = (),
) -> RecommendationSet:
    """Top-``k`` configs for a model / method / train-size slice.

    Without ``table``: the shipped recommendations (``k`` default: all ranks shipped). A model
    with no shipped recommendation raises :class:`InputError` listing the models there are.
    With ``table`` (path or :class:`ResultsTable`): CBS ranking of the slice (``k`` default 3);
    ``tol="auto"`` picks CBS's tolerance by leave-one-dataset-out on the slice
    (:func:`staytuned.cbs.tolerance.choose_tolerance`; the choice is in each recommendation's source).
    """
    if k is not None and k < 1:
        raise InputError("k must be positive", field="k", value=k, expected="an integer >= 1")
    if train_size is not None and int(train_size) < 1:
        raise InputError("train size must be positive", field="train_size", value=train_size,
                         expected="an integer >= 1")
    if table is None:
        return _from_shipped(model, method, train_size, k, extra)
    return _from_table(table, model, method, train_size, 3 if k is None else k, tol, abs_tol, columns, direction, agg)


def _from_shipped(model: str | None, method: str | None, train_size: int | None, k: int | None,
                  extra: Sequence[str | Path]) -> RecommendationSet:
    models, recs = _load_presets(extra)
    notes: list[str] = []
    listing = "; ".join(
        f"{m} ({', '.join(sorted({str(r.method) for r in recs if r.model == m}))})" for m in models
    )
    if model is not None:
        canon = resolve_model(model, extra)
        if canon is None or not any(r.model == canon for r in recs):
            raise InputError("no shipped recommendation for this model", field="model", value=model,
                             expected=f"one of: {listing} (or pass a results table)")
        recs = [r for r in recs if r.model == canon]
    stand_in = None
    if method is not None:
        have = sorted({str(r.method) for r in recs})
        picked = [r for r in recs if str(r.method).lower() == method.lower()]
        if not picked and STAND_INS.get(method.lower()) in have:
            stand_in = method.lower()
            picked = [r for r in recs if str(r.method).lower() == STAND_INS[stand_in]]
            notes.append(stand_in_note(stand_in, f"shipped for {model or 'these models'}"))
        recs = picked
        if not recs:
            raise InputError("no shipped recommendation for this method", field="method", value=method,
                             expected=f"one of {have}")
    sizes = sorted({int(r.train_size) for r in recs if r.train_size is not None})
    if train_size is not None:
        exact = [r for r in recs if r.train_size is not None and int(r.train_size) == int(train_size)]
        if exact:
            recs = exact
        elif any(r.train_size is None for r in recs):
            recs = [r for r in recs if r.train_size is None]
            notes.append(f"no recommendation specific to train size {train_size}: showing the general ones")
        else:  # the nearest measured size on a log scale (100 is nearer to 200 than 1000 is)
            near = nearest_size(sizes, int(train_size))
            recs = [r for r in recs if r.train_size is not None and int(r.train_size) == near]
            notes.append(f"no recommendation for train size {train_size}: showing those of the "
                         f"nearest measured size, {near}")
    if k is not None:
        recs = [r for r in recs if r.rank <= k]
    recs = sorted(recs, key=lambda r: (natural_key(r.model), str(r.method), r.train_size or 0, r.rank))
    return RecommendationSet(tuple(recs), origin="shipped", notes=tuple(notes), stand_in_for=stand_in)


def _from_table(table: str | Path | ResultsTable, model: str | None, method: str | None,
                train_size: int | None, k: int, tol: float | str, abs_tol: float | None,
                columns: ColumnSpec | None, direction: str | Mapping[str, str] | None, agg: str) -> RecommendationSet:
    t = table if isinstance(table, ResultsTable) else load_results(table, columns)
    if model is not None and t.model is not None:
        model = match_model(t, model)
    stand_in = None
    if method is not None and method.lower() in STAND_INS and t.method is not None:
        present = {loose_key(v, "method") for v in t.values("method")}
        if loose_key(method, "method") not in present and loose_key(STAND_INS[method.lower()], "method") in present:
            stand_in, method = method.lower(), STAND_INS[method.lower()]
    sliced = t.slice(model=model, method=method, train_size=train_size)
    matrix = sliced.score_matrix(direction=direction, agg=agg)
    from staytuned.cbs.tolerance import choose_tolerance, parse_tol

    tol = parse_tol(tol)
    tol_source: dict[str, Any] = {}
    if tol == "auto":
        if abs_tol is not None:
            raise InputError("tol auto chooses a relative tolerance; it cannot go with abs_tol", field="tol",
                             value="auto", expected="a number with abs_tol, or auto without it")
        tol = choose_tolerance(matrix).tol
        tol_source = {"tol_chosen_by": "auto (leave-one-dataset-out)"}
    ranking = rank(matrix, tol=float(tol), abs_tol=abs_tol, k=k)
    the_model = model or (sliced.values("model") or ["(any)"])[0]
    the_method = method or next(iter(sliced.values("method")), None)
    ts = train_size if train_size is not None else next(iter(sliced.values("train_size")), None)
    recs = tuple(
        Recommendation(
            model=str(the_model), method=the_method, train_size=int(float(ts)) if ts is not None else None,
            rank=s.rank, config=dict(s.hps),
            source={"results_table": t.source, "tol": tol, **tol_source, "abs_tol": abs_tol,
                    "n_datasets": len(matrix.datasets), "n_configs": matrix.shape[0]},
            config_id=s.config_id, coverage=s.coverage, mean_best_of_k=s.mean_best_of_k, new_datasets=s.new_datasets,
        )
        for s in ranking.steps
    )
    notes = (stand_in_note(stand_in, f"in {t.source}"),) if stand_in is not None else ()
    return RecommendationSet(recs, origin=t.source, notes=(*notes, *matrix.notes), stand_in_for=stand_in)


def match_model(t: ResultsTable, model: str) -> str:
    """The table's model value for ``model``: loose match, then through the shipped aliases."""
    values = t.values("model")
    want = loose_key(model, "model")
    for v in values:
        if loose_key(v, "model") == want:
            return v
    canon = resolve_model(model)
    if canon is not None:
        for v in values:
            if resolve_model(v) == canon:
                return v
    raise InputError(f"no rows for model {model!r}", file=t.source, column="model", expected=f"one of {values}")
