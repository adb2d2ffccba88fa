"""Check everything before the first trial, then run ``tune`` / ``grid`` on an executor.

Validation catches, before any trial runs: an invalid space or unknown HP name, an unknown
strategy or pruner, a task that cannot be loaded, an unknown model, an unreachable storage URL,
and configs TrainConfig rejects (grid points and CBS configs).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from staytuned.errors import InputError
from staytuned.hparams.schema import METHODS
from staytuned.search.executors import Executor, ExecutorReport, make_executor
from staytuned.search.objective import DEFAULT_TRIAL_FN
from staytuned.search.pruners import make_pruner
from staytuned.search.space import load_space
from staytuned.search.storage import open_storage
from staytuned.search.strategies import check_strategy, offline_for, strategy_class
from staytuned.search.study import (
    BestTrial,
    Counts,
    GridSpec,
    StudySpec,
    best_trial,
    counts,
    prepare_study,
    strategy_of,
)


def task_direction(task: str) -> str:
    """Load the task once (clear InputError if it cannot be) and return max | min."""
    from staytuned.tasks import load_task

    t = load_task(task)
    return "min" if str(t.direction).lower().startswith("min") else "max"


def check_model(model: str | None) -> None:
    if model is None:
        return
    from staytuned.models import resolve_model

    resolve_model(model)


def check_configs(configs: list[dict[str, Any]], source: str) -> None:
    """Every config must make a valid TrainConfig (e.g. no negative learning rate)."""
    from staytuned.hparams.train import TrainConfig

    for cfg in configs:
        hp = {k: v for k, v in cfg.items() if k != "model"}
        try:
            TrainConfig.from_dict(hp).validate()
        except InputError as exc:
            raise InputError(f"config rejected by TrainConfig: {exc}", file=source,
                             value=hp) from None


def check_space_kind(space: Any, kind: str) -> None:
    """``tune``/``grid`` train models: a decoding space (``kind: decode``) is refused."""
    if space.kind != kind:
        raise InputError(f"not a {'training' if kind == 'train' else 'decoding'} space",
                         file=str(space.source), field="kind", value=space.kind,
                         expected=f"kind: {kind}" + (" (decoding spaces are for `decode tune`)"
                                                     if kind == "train" else ""))


def check_sizes(settings: Any) -> None:
    """Train and eval sizes: positive, or None (every row)."""
    for name in ("train_size", "eval_size"):
        value = getattr(settings, name, None)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise InputError("must be an integer >= 1 (or unset: every row)", field=name,
                             value=value)


def prepare_spec(spec: StudySpec, *, cbs_table: str | None = None) -> StudySpec:
    """Validate a tune spec and fill in the direction and the offline CBS source
    (``cbs_table``: a results table for the CBS strategies; default: what ships)."""
    check_strategy(spec.strategy)
    make_pruner(spec.pruner)
    space = spec.load_space()
    check_space_kind(space, "train")
    if spec.n_trials < 1:
        raise InputError("the number of trials must be >= 1", field="n_trials", value=spec.n_trials)
    if spec.cbs_k < 0:
        raise InputError("must be >= 0", field="cbs_k", value=spec.cbs_k)
    check_sizes(spec.settings)
    if spec.method is not None and spec.method not in METHODS:
        raise InputError("unknown method", field="method", value=spec.method, expected=", ".join(METHODS))
    fixed_method = space.fixed.get("method")
    if spec.method is not None and fixed_method is not None and fixed_method != spec.method:
        raise InputError("the space fixes another method", file=space.source, field="method",
                         value=fixed_method, expected=f"{spec.method} (the method asked for)")
    model_param = next((p for p in space.params if p.name == "model"), None)
    if spec.model is None and model_param is None and "model" not in space.fixed:
        raise InputError("no model given", field="model",
                         expected="a model, or a 'model' parameter in the space")
    if spec.trial_fn == DEFAULT_TRIAL_FN:
        spec = replace(spec, direction=task_direction(spec.task))
        check_model(spec.model)
        for m in (model_param.values if model_param else ()):
            check_model(str(m))
    if spec.offline is None and strategy_class(spec.strategy).needs != "nothing":
        offline = offline_for(spec.strategy, cbs_table=cbs_table, model=spec.model,
                              method=spec.context["method"], train_size=spec.settings.train_size)
        spec = replace(spec, offline=offline)
    if spec.trial_fn == DEFAULT_TRIAL_FN and space.kind == "train":
        queue = strategy_of(spec, space).initial_queue(kind=spec.kind)
        check_configs([{**space.fixed, **q, "method": spec.context["method"]} for q in queue[:50]],
                      str(space.source))
    open_storage(spec.storage, spec.heartbeat)  # unreachable storage: error before any trial
    return spec


@dataclass(frozen=True)
class TuneOutcome:
    study_name: str
    storage: str
    counts: Counts
    best: BestTrial | None
    ran: int
    budget: int
    report: ExecutorReport | None = None  # what the executor said about the run


def tune(spec: StudySpec, *, workers: int | None = None,
         executor: Executor | None = None) -> TuneOutcome:
    """Run (or resume) a study until it holds its budget of finished trials.

    ``executor``: where the workers run (default: processes on this machine); ``workers``: how
    many (default: one locally; on Ray, as many as the cluster holds).
    """
    executor = executor or make_executor("local")
    executor.check(workers)
    study = prepare_study(spec)
    report = executor.run(spec, workers=workers)
    return TuneOutcome(study_name=spec.study_name, storage=spec.storage, counts=counts(study),
                       best=best_trial(study), ran=report.trials_run, budget=report.total,
                       report=report)


def prepare_grid(spec: GridSpec) -> GridSpec:
    """Validate a grid: space, tasks, models, configs, storage; fill in task directions."""
    space = load_space(spec.space)
    check_space_kind(space, "train")
    check_sizes(spec.settings)
    for cell in spec.cells:
        check_sizes(cell)
    if not spec.cells:
        raise InputError("the grid has no cells", field="cells",
                         expected="at least one task and model")
    directions = dict(spec.directions)
    if spec.trial_fn == DEFAULT_TRIAL_FN:
        for task in sorted({c.task for c in spec.cells}):
            directions.setdefault(task, task_direction(task))
        for model in sorted({c.model for c in spec.cells}):
            check_model(model)
    for cell in spec.cells:
        cs = spec.cell_spec(cell)
        fixed_method = space.fixed.get("method")
        if fixed_method is not None and fixed_method != cell.method:
            raise InputError("the space fixes another method than the cell's", file=space.source,
                             field="method", value=fixed_method,
                             expected=f"{cell.method} (the cell's method)")
        grid = space.grid(cs.context)
        if spec.trial_fn == DEFAULT_TRIAL_FN and space.kind == "train":
            check_configs([{**g, "method": cell.method} for g in grid[:50]], str(space.source))
    open_storage(spec.storage, spec.heartbeat)
    spec = replace(spec, directions=directions)
    for cell in spec.cells:  # creates the studies, checks stored params, enqueues the grid
        prepare_study(spec.cell_spec(cell))
    return spec


def grid(spec: GridSpec, *, workers: int | None = None, executor: Executor | None = None) -> int:
    """Run (or resume) every config on every cell; returns the trials run by these workers."""
    executor = executor or make_executor("local")
    return executor.run(spec, workers=workers).trials_run


def grid_status(spec: GridSpec) -> dict[str, Counts]:
    out = {}
    for cell in spec.cells:
        cs = spec.cell_spec(cell)
        out[cell.key] = counts(prepare_study(cs))
    return out
