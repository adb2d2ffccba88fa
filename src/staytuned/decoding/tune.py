"""``staytuned decode tune``: search decoding parameters with the training search's machinery.

The study is created, stored and sampled by ``staytuned.search`` (``prepare_study``,
``make_sampler``, Optuna storage; study ``kind`` "decode"), so optuna-dashboard, resume and the
results export work the same. One trial = one decoding config scored over ``samples`` seeds on
the task's validation prompts (:func:`score_config`); the model is loaded once for the study.

The winner is chosen with the noise in mind: the config with the best *pessimistic* bound (the
lower end of its confidence interval when maximizing). Configs whose interval overlaps the
winner's are listed as indistinguishable, and ``confirm_top`` re-scores the best few with more
seeds before choosing. Secondary objectives give a Pareto front.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from staytuned.decoding.factory import BackendOptions, open_backend
from staytuned.decoding.objective import (
    DEFAULT_MAX_NEW_TOKENS,
    SECONDARY,
    ConfigScore,
    Estimate,
    score_config,
    task_prompts,
)
from staytuned.errors import InputError
from staytuned.hparams.decode import DecodingConfig

CONFIRM_ATTR = "decode:confirm"  # study user_attr: extra seeds of the confirmed configs


@dataclass(frozen=True)
class DecodeTuneSpec:
    """Everything a decoding study needs."""

    task: str
    model: str | None
    storage: str
    study_name: str
    space: str | Mapping[str, Any] = "preset:decoding"
    strategy: str = "tpe"
    n_trials: int = 12
    samples: int = 3
    eval_size: int | None = 32
    eval_split: str = "validation"
    seed: int = 0
    overrides: Mapping[str, Any] = field(default_factory=dict)  # fixed decoding params
    confidence: float = 0.95
    secondary: tuple[str, ...] = ()
    confirm_top: int = 0
    confirm_samples: int = 0
    backend: BackendOptions = field(default_factory=BackendOptions)


@dataclass
class ConfigRow:
    """One distinct config of the study with its estimate and secondaries."""

    trial: int
    config_id: str
    config: dict[str, Any]
    estimate: Estimate
    secondary: dict[str, float]
    sample_scores: list[float]
    pareto: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"trial": self.trial, "config_id": self.config_id, "config": self.config,
                "score": self.estimate.to_dict(), "secondary": self.secondary,
                "sample_scores": self.sample_scores, "pareto": self.pareto}


@dataclass
class DecodeTuneOutcome:
    study_name: str
    storage: str
    metric: str
    direction: str
    rows: list[ConfigRow]
    winner: ConfigRow | None
    best_mean: ConfigRow | None
    indistinguishable: list[str]
    pareto_objectives: list[str]
    failed: int
    ran: int
    confidence: float = 0.95

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.study_name, "storage": self.storage, "metric": self.metric,
            "direction": self.direction, "confidence": self.confidence, "ran": self.ran,
            "failed": self.failed,
            "best": None if self.winner is None else {
                **self.winner.to_dict(),
                "rule": "best confidence bound (lower when maximizing, upper when minimizing)"},
            "best_mean": None if self.best_mean is None else self.best_mean.to_dict(),
            "indistinguishable": self.indistinguishable,
            "pareto_objectives": self.pareto_objectives,
            "configs": [r.to_dict() for r in self.rows],
        }


# ---------------------------------------------------------------------------- validation


def _default_overrides(task_type: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(overrides)
    out.setdefault("max_new_tokens", DEFAULT_MAX_NEW_TOKENS.get(task_type, 32))
    return out


def check_spec(spec: DecodeTuneSpec, *, check_model: bool = True) -> tuple[Any, Any]:
    """Everything that can be checked before a model loads: space, strategy, task, overrides,
    every grid point, the model reference (``check_model``: not when a backend is given) and the
    storage (opened). Returns ``(space, task)``."""
    from staytuned.search.space import load_space
    from staytuned.search.strategies import CBS_STRATEGIES, check_strategy
    from staytuned.tasks import load_task

    check_strategy(spec.strategy)
    if spec.strategy in CBS_STRATEGIES:
        raise InputError("CBS strategies rank configs from offline training results; decoding "
                         "has none", field="strategy", value=spec.strategy,
                         expected="grid, random, tpe or gp")
    for name, value, low in (("trials", spec.n_trials, 1), ("samples", spec.samples, 1),
                             ("confirm_top", spec.confirm_top, 0),
                             ("confirm_samples", spec.confirm_samples, 0)):
        if not isinstance(value, int) or value < low:
            raise InputError(f"must be an integer >= {low}", field=name, value=value)
    if spec.eval_size is not None and (not isinstance(spec.eval_size, int) or spec.eval_size < 1):
        raise InputError("must be an integer >= 1 (or unset: every prompt)", field="eval_size",
                         value=spec.eval_size)
    if not 0 < spec.confidence < 1:
        raise InputError("out of range", field="confidence", value=spec.confidence,
                         expected="a number in (0, 1), e.g. 0.95")
    unknown = [s for s in spec.secondary if s not in SECONDARY]
    if unknown:
        raise InputError("unknown secondary objective", field="secondary", value=unknown[0],
                         expected="any of " + ", ".join(SECONDARY))
    space = load_space(spec.space)
    if space.kind != "decode":
        raise InputError("not a decoding space", file=str(space.source), field="kind",
                         value=space.kind, expected="kind: decode (e.g. preset:decoding)")
    task = load_task(spec.task)
    overrides = _default_overrides(task.type, spec.overrides)
    DecodingConfig.from_dict(overrides, source="overrides")
    # Every grid point must be a valid config; a space that allows e.g. top_p 0 is refused now.
    if space.size() <= 5000:
        for point in space.grid():
            _decoding_config({**point, **overrides}, source=str(space.source))
    if check_model and spec.backend.kind == "hf" and spec.model is not None:
        from staytuned.models import resolve_model

        resolve_model(spec.model)  # an unknown model: refused before the storage is created
    from staytuned.search.storage import open_storage

    open_storage(spec.storage)  # an unreachable storage fails before the model loads
    return space, task


def _decoding_config(config: Mapping[str, Any], *, source: str | None = None) -> DecodingConfig:
    data = {k: v for k, v in config.items() if k != "model"}
    return DecodingConfig.from_dict(data, source=source)


# ---------------------------------------------------------------------------- objective


@dataclass
class DecodeObjective:
    """Optuna objective: suggest a config, score it over seeds, store it like a training trial."""

    space: Any
    context: dict[str, Any]
    overrides: dict[str, Any]
    backend: Any
    task: Any
    rows: list[dict[str, Any]]
    samples: int
    seed: int
    model_name: str
    versions: dict[str, str]
    prompts: tuple[list[str], bool]
    confidence: float = 0.95
    on_trial: Callable[[int, ConfigScore | None, dict[str, Any], str | None], None] | None = None

    def __call__(self, trial: Any) -> float:
        from staytuned.search.objective import TrialFailed
        from staytuned.search.records import cell_attrs, result_attrs, write_record

        config = self.space.suggest(trial, self.context)
        config.update(self.overrides)
        config.pop("model", None)
        measured = {"metric": self.task.metric, "n_eval": len(self.rows)}
        write_record(trial, {**cell_attrs(task=self.task.name, model=self.model_name, method=None,
                                          train_size=None, seed=self.seed, config=config,
                                          versions=self.versions), **measured})
        started = time.perf_counter()
        try:
            cfg = _decoding_config(config)
            result = score_config(self.backend, self.task, self.rows, cfg, samples=self.samples,
                                  seed=self.seed, prompts=self.prompts, confidence=self.confidence)
        except InputError as exc:
            # An invalid combination fails this trial only (the space could not rule it out).
            reason = f"invalid decoding config: {exc}"
        except Exception as exc:
            from staytuned.decoding.http_backend import BackendError

            if isinstance(exc, BackendError):
                raise  # a server that is down fails every trial: stop and say why
            reason = f"{type(exc).__name__}: {exc}"
        else:
            est = result.score
            finite = math.isfinite(est.mean)
            attrs = result_attrs({**measured, "status": "ok" if finite else "failed",
                                  "error": None if finite else "the metric is not a number",
                                  "score": est.mean, "metrics": result.metrics(),
                                  "runtime_s": time.perf_counter() - started})
            write_record(trial, {**attrs, "decoding": cfg.to_dict()})
            if self.on_trial is not None:
                self.on_trial(trial.number, result, config, None)
            if attrs["status"] != "ok":
                raise TrialFailed(str(attrs["error"]))
            return est.mean
        write_record(trial, result_attrs({**measured, "status": "failed", "error": reason,
                                          "runtime_s": time.perf_counter() - started}))
        if self.on_trial is not None:
            self.on_trial(trial.number, None, config, reason)
        raise TrialFailed(reason)


# ---------------------------------------------------------------------------- study


def run_decode_tune(spec: DecodeTuneSpec, *, backend: Any = None,
                    on_trial: Callable[[int, ConfigScore | None, dict[str, Any], str | None], None] | None = None,
                    on_confirm: Callable[[str, int], None] | None = None) -> DecodeTuneOutcome:
    """Run (or resume) a decoding study until it holds ``n_trials`` finished trials."""
    import optuna

    from staytuned.search.objective import TrialFailed, TrialSettings
    from staytuned.search.storage import package_versions
    from staytuned.search.strategies import make_sampler
    from staytuned.search.study import StudySpec, budget_of, counts, prepare_study

    # Also opens the storage: an unreachable one fails before the model loads.
    space, task = check_spec(spec, check_model=backend is None)
    overrides = _default_overrides(task.type, spec.overrides)
    rows = task.eval_rows(spec.eval_split, size=spec.eval_size, seed=spec.seed)
    if not rows:
        raise InputError("the evaluation split is empty", field="eval_split", value=spec.eval_split)
    if backend is None:
        backend = open_backend(spec.model, spec.backend)
    model_name = spec.model or backend.model_name
    direction = "min" if str(task.direction).lower().startswith("min") else "max"
    study_spec = StudySpec(
        storage=spec.storage, study_name=spec.study_name, task=spec.task, model=model_name,
        space=spec.space, strategy=spec.strategy, n_trials=spec.n_trials,
        settings=TrialSettings(eval_size=spec.eval_size, eval_split=spec.eval_split,
                               seed=spec.seed, overrides=dict(overrides)),
        direction=direction, seed=spec.seed, kind="decode",
    )
    study = prepare_study(study_spec)
    study.set_user_attr("samples", spec.samples)
    study.set_user_attr("metric", task.metric)
    sampler = make_sampler(spec.strategy, space, seed=spec.seed, n_trials=spec.n_trials,
                           context=study_spec.context)
    study = optuna.load_study(study_name=spec.study_name, storage=study._storage, sampler=sampler)
    objective = DecodeObjective(
        space=space, context=study_spec.context, overrides=overrides, backend=backend, task=task,
        rows=rows, samples=spec.samples, seed=spec.seed, model_name=model_name,
        versions=package_versions(), prompts=task_prompts(task, rows, backend),
        confidence=spec.confidence, on_trial=on_trial,
    )
    budget = budget_of(study_spec, space)
    ran = 0
    while counts(study).finished < budget:
        if isinstance(sampler, optuna.samplers.GridSampler) and _grid_exhausted(study, sampler):
            break
        study.optimize(objective, n_trials=1, catch=(TrialFailed,), gc_after_trial=False)
        ran += 1
    config_rows = collect_rows(study, spec.confidence)
    if spec.confirm_top and spec.confirm_samples:
        confirm(study, config_rows, objective, spec, direction, on_confirm=on_confirm)
        config_rows = collect_rows(study, spec.confidence)
    return summarize(study, config_rows, task.metric, direction, spec, ran)


def _grid_exhausted(study: Any, sampler: Any) -> bool:
    from staytuned.search.strategies.grid import grid_done as _grid_done

    return _grid_done(study, sampler)


def collect_rows(study: Any, confidence: float = 0.95) -> list[ConfigRow]:
    """Distinct configs of the finished trials (a config sampled twice keeps its first trial),
    with the extra seeds of a confirmation merged in."""
    from staytuned.search.records import study_records

    confirmed: dict[str, Any] = study.user_attrs.get(CONFIRM_ATTR) or {}
    rows: dict[str, ConfigRow] = {}
    for rec in study_records(study):
        if rec.status != "ok" or rec.config_id in rows:
            continue
        scores = [float(s) for s in rec.metrics.get("sample_scores") or [] if s is not None]
        extra = confirmed.get(rec.config_id, {})
        scores += [float(s) for s in extra.get("sample_scores", [])]
        rows[rec.config_id] = ConfigRow(
            trial=rec.number, config_id=rec.config_id, config=dict(rec.config),
            estimate=Estimate.of(scores or [_nan(rec.score)], confidence),
            secondary={k: _nan(rec.metrics.get(k)) for k in SECONDARY}, sample_scores=scores,
        )
    return list(rows.values())


def _nan(v: Any) -> float:
    return float(v) if isinstance(v, int | float) else float("nan")


def confirm(study: Any, rows: list[ConfigRow], objective: DecodeObjective, spec: DecodeTuneSpec,
            direction: str, *, on_confirm: Callable[[str, int], None] | None = None) -> None:
    """Re-score the ``confirm_top`` best configs (by mean; sampling configs only, greedy is exact)
    with ``confirm_samples`` new seeds; stored in the study so a resumed run reuses them."""
    store: dict[str, Any] = dict(study.user_attrs.get(CONFIRM_ATTR) or {})
    sign = 1 if direction == "max" else -1
    ranked = sorted((r for r in rows if math.isfinite(r.estimate.mean)),
                    key=lambda r: -sign * r.estimate.mean)
    picked = [r for r in ranked if _decoding_config(r.config).do_sample][: spec.confirm_top]
    for row in picked:
        have = store.get(row.config_id, {"sample_scores": [], "seeds": []})
        need = spec.confirm_samples - len(have["seeds"])
        if need <= 0:
            continue
        first_seed = spec.seed + spec.samples + len(have["seeds"])
        cfg = _decoding_config(row.config)
        result = score_config(objective.backend, objective.task, objective.rows, cfg,
                              samples=need, seed=first_seed, prompts=objective.prompts)
        have = {"sample_scores": have["sample_scores"] + [s.score for s in result.samples],
                "seeds": have["seeds"] + [s.seed for s in result.samples]}
        store[row.config_id] = have
        study.set_user_attr(CONFIRM_ATTR, store)
        if on_confirm is not None:
            on_confirm(row.config_id, need)


def choose_winner(rows: Sequence[ConfigRow], direction: str) -> tuple[ConfigRow | None, list[str]]:
    """Best pessimistic bound wins; ties go to the smaller spread, then the better mean.

    Returns the winner and the ids of configs statistically indistinguishable from it (their
    interval overlaps the winner's).
    """
    valid = [r for r in rows if math.isfinite(r.estimate.mean)]
    if not valid:
        return None, []
    if direction == "max":
        winner = max(valid, key=lambda r: (r.estimate.low, -r.estimate.std, r.estimate.mean))
        ties = [r.config_id for r in valid if r is not winner and r.estimate.high >= winner.estimate.low]
    else:
        winner = min(valid, key=lambda r: (r.estimate.high, r.estimate.std, r.estimate.mean))
        ties = [r.config_id for r in valid if r is not winner and r.estimate.low <= winner.estimate.high]
    return winner, ties


def pareto_front(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Indices of the non-dominated points (NaN counts as worst)."""
    def key(p: Sequence[float]) -> list[float]:
        out = []
        for v, d in zip(p, directions, strict=True):
            v = float(v)
            if not math.isfinite(v):
                v = -math.inf if d == "max" else math.inf
            out.append(-v if d == "max" else v)  # everything minimized
        return out

    keys = [key(p) for p in points]
    front = []
    for i, a in enumerate(keys):
        dominated = any(all(x <= y for x, y in zip(b, a, strict=True)) and b != a
                        for j, b in enumerate(keys) if j != i)
        if not dominated:
            front.append(i)
    return front


def summarize(study: Any, rows: list[ConfigRow], metric: str, direction: str,
              spec: DecodeTuneSpec, ran: int) -> DecodeTuneOutcome:
    from staytuned.search.study import counts

    winner, ties = choose_winner(rows, direction)
    valid = [r for r in rows if math.isfinite(r.estimate.mean)]
    best_mean = None
    if valid:
        best_mean = (max if direction == "max" else min)(valid, key=lambda r: r.estimate.mean)
    objectives = [metric, *spec.secondary]
    if spec.secondary and valid:
        dirs = [direction, *(SECONDARY[s] for s in spec.secondary)]
        pts = [[r.estimate.mean, *(r.secondary[s] for s in spec.secondary)] for r in valid]
        for i in pareto_front(pts, dirs):
            valid[i].pareto = True
    return DecodeTuneOutcome(
        study_name=spec.study_name, storage=spec.storage, metric=metric, direction=direction,
        rows=rows, winner=winner, best_mean=best_mean, indistinguishable=ties,
        pareto_objectives=objectives if spec.secondary else [], failed=counts(study).failed, ran=ran,
        confidence=spec.confidence,
    )
