"""Study runners: ``tune`` (one cell, any strategy) and ``grid`` (every config on every cell).

Both keep all state in the Optuna storage, so re-running the same command resumes:

* ``tune`` runs until the study holds ``n_trials`` finished trials (complete, pruned or failed
  by the trial itself). Trials left RUNNING by a dead process are failed by Optuna's heartbeat
  check and re-enqueued (RetryHeartbeatStaleTrialCallback); the runner waits for them. Each new
  trial is created, and its whole config decided, under the study's storage lock, one worker at
  a time across processes and machines: no config runs twice and the budget is never exceeded
  (:func:`_next_trial`; each strategy's guarantee is its ``Strategy.distinct``).
* ``grid`` enqueues the grid points of each cell's study once (under a cross-process lock, with
  ``skip_if_exists``) and workers *claim* WAITING trials atomically (``set_trial_state_values``
  only moves WAITING -> RUNNING once), so no grid point runs twice, whatever the number of
  workers, processes or machines on the storage.

:func:`run_worker` / :func:`run_grid_worker` take a picklable spec: they are what every
executor (:mod:`staytuned.search.executors`: local processes, Ray) runs.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from staytuned.errors import InputError
from staytuned.search.objective import (
    DEFAULT_TRIAL_FN,
    Objective,
    TrialFailed,
    TrialSettings,
)
from staytuned.search.pruners import make_pruner
from staytuned.search.records import TrialRecord, study_records
from staytuned.search.space import SearchSpace, load_space
from staytuned.search.storage import (
    HeartbeatSettings,
    open_storage,
    package_versions,
)
from staytuned.search.strategies import (
    OfflineSource,
    Strategy,
    build_strategy,
    check_strategy,
)


@dataclass(frozen=True)
class StudySpec:
    """Everything a worker needs to run trials of one study (picklable, for processes and Ray)."""

    storage: str
    study_name: str
    task: str
    model: str | None
    space: str | Mapping[str, Any]  # preset:<name>, a YAML path, or a parsed mapping
    strategy: str = "tpe"
    n_trials: int = 10
    method: str | None = None
    settings: TrialSettings = field(default_factory=TrialSettings)
    direction: str = "maximize"
    pruner: str | None = None
    seed: int = 0
    cbs_k: int = 5
    offline: OfflineSource | None = None
    trial_fn: str = DEFAULT_TRIAL_FN
    heartbeat: HeartbeatSettings = field(default_factory=HeartbeatSettings)
    kind: str = "tune"  # tune | grid | decode

    def load_space(self) -> SearchSpace:
        return load_space(self.space)

    @property
    def context(self) -> dict[str, Any]:
        return Objective(self.load_space(), self.task, self.model, self.method,
                         self.settings).context


@dataclass(frozen=True)
class Counts:
    """Trial counts of a study, as the live display and the budget see them."""

    finished: int = 0
    complete: int = 0
    failed: int = 0
    pruned: int = 0
    running: int = 0
    waiting: int = 0


def counts(study: Any) -> Counts:
    c = {"complete": 0, "failed": 0, "pruned": 0, "running": 0, "waiting": 0}
    for rec in study_records(study):
        if rec.status == "ok":
            c["complete"] += 1
        elif rec.status in ("failed", "pruned"):
            c[rec.status] += 1
        elif rec.status == "running":
            c["waiting" if rec.state == "WAITING" else "running"] += 1
        # interrupted trials are not counted: the heartbeat check enqueues their retry
    return Counts(finished=c["complete"] + c["failed"] + c["pruned"], **c)


def _direction(d: str) -> Literal["minimize", "maximize"]:
    d = d.lower()
    return "minimize" if d in ("min", "minimize") else "maximize"


def prepare_study(spec: StudySpec) -> Any:
    """Create or load the study and enqueue what the strategy fixes up front. Idempotent."""
    import optuna

    check_strategy(spec.strategy)
    space = spec.load_space()
    storage = open_storage(spec.storage, spec.heartbeat)
    study = optuna.create_study(storage=storage, study_name=spec.study_name,
                                direction=_direction(spec.direction), load_if_exists=True)
    if study.direction.name.lower() != _direction(spec.direction):
        raise InputError("the stored study optimizes the other direction", field="study",
                         value=spec.study_name, expected=f"{study.direction.name.lower()}")
    attrs = {"kind": spec.kind, "direction": _direction(spec.direction)[:3],
             "task": spec.task, "model": spec.model, "method": spec.context["method"],
             "train_size": spec.settings.train_size, "space": space.to_dict(),
             "strategy": spec.strategy}
    check_stored_params(study, space)
    for key, value in attrs.items():
        if study.user_attrs.get(key) != value:
            study.set_user_attr(key, value)
    queue = strategy_of(spec, space).initial_queue(kind=spec.kind)
    if queue:
        from staytuned.search.strategies.planning import plan_lock

        # plan_lock: the lock new trials are created under
        with plan_lock(spec.storage, spec.study_name), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # skip_if_exists is experimental in name only
            for params in queue:
                study.enqueue_trial(params, skip_if_exists=True)
    return study


def check_stored_params(study: Any, space: SearchSpace) -> None:
    """A study keeps one distribution per parameter name (Optuna refuses another kind or other
    choices mid-study): say so before any trial runs, naming the parameter and both versions."""
    from optuna.distributions import check_distribution_compatibility

    stored: dict[str, Any] = {}
    for t in study.get_trials(deepcopy=False):
        for name, dist in t.distributions.items():
            stored.setdefault(name, dist)
    for p in space.params:
        if p.name not in stored:
            continue
        new = p.distribution()
        try:
            check_distribution_compatibility(stored[p.name], new)
        except ValueError as exc:
            raise InputError(
                f"parameter does not match the one stored in study {study.study_name!r} ({exc})",
                file=space.source, field=p.name, value=repr(new),
                expected=f"{stored[p.name]!r}: the same type, range kind and choices as the "
                         "study's earlier trials, or a new study name") from None


def strategy_of(spec: StudySpec, space: SearchSpace | None = None) -> Strategy:
    """The study's strategy, built as ``simulate`` builds it (``space``: the loaded space)."""
    return build_strategy(spec.strategy, space=spec.load_space() if space is None else space,
                          seed=spec.seed, n_trials=spec.n_trials, context=spec.context,
                          cbs_k=spec.cbs_k, offline=spec.offline)


def _objective(spec: StudySpec, space: SearchSpace) -> Objective:
    return Objective(space=space, task=spec.task, model=spec.model, method=spec.method,
                     settings=spec.settings, trial_fn=spec.trial_fn, versions=package_versions())


def _fail_stale(study: Any) -> None:
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optuna.storages.fail_stale_trials(study)


def run_worker(spec: StudySpec, n_trials: int | None = None) -> int:
    """Run trials of a ``tune`` study until it holds ``spec.n_trials`` finished trials (or this
    worker ran ``n_trials``). Returns how many trials this worker ran. Safe to run in parallel:
    in several processes, commands or machines on one storage, with equal seeds or not."""
    import optuna

    space = spec.load_space()
    study = prepare_study(spec)
    strategy = strategy_of(spec, space)
    sampler = strategy.sampler(storage_url=spec.storage)
    max_epochs = float(space.fixed.get("epochs", 3))
    study = optuna.load_study(study_name=spec.study_name, storage=study._storage,
                              sampler=sampler, pruner=make_pruner(spec.pruner, max_epochs=max_epochs))
    objective = _objective(spec, space)
    budget = strategy.budget
    ran = 0
    while n_trials is None or ran < n_trials:
        trial = _next_trial(spec, study, budget)
        if trial == "done":
            break
        if trial == "wait":
            # Others are running the last trials; if their process died, the heartbeat check
            # fails them and enqueues a retry, which this loop then runs. Polling is one read.
            time.sleep(1.0)
            continue
        run_claimed(study, objective, trial, spec.heartbeat.interval)
        ran += 1
    return ran


def _next_trial(spec: StudySpec, study: Any, budget: int) -> Any:
    """A new trial of the study with its whole config decided, "wait" or "done".

    Under the study's storage lock, so that every worker of every process and machine decides
    in turn, seeing every other trial's config (the samplers plan whole configs in
    ``before_trial``, see :mod:`staytuned.search.strategies.planning`), and the study never
    holds more trials than its budget (two workers cannot both take the last one).
    """
    from staytuned.search.strategies.planning import plan_lock

    with plan_lock(spec.storage, spec.study_name):
        _fail_stale(study)
        c = counts(study)
        if c.finished >= budget:
            return "done"
        if c.finished + c.running >= budget and not c.waiting:
            return "wait"
        with warnings.catch_warnings():
            # run_claimed beats for the trial, as study.optimize would
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            return study.ask()


def budget_of(spec: StudySpec, space: SearchSpace) -> int:
    """Trials the study ends with: ``n_trials``, or the grid size when that is smaller."""
    return strategy_of(spec, space).budget


# ------------------------------------------------------------------------------------------
# grid


@dataclass(frozen=True)
class Cell:
    task: str
    model: str
    method: str
    train_size: int | None

    @property
    def key(self) -> str:
        return f"{self.task}/{self.model}/{self.method}/{self.train_size or 'all'}"


@dataclass(frozen=True)
class GridSpec:
    """A full grid: every config of ``space`` on every cell, one study per cell in one storage."""

    storage: str
    name: str
    cells: tuple[Cell, ...]
    space: str | Mapping[str, Any]
    directions: Mapping[str, str] = field(default_factory=dict)  # task -> max | min
    settings: TrialSettings = field(default_factory=TrialSettings)
    trial_fn: str = DEFAULT_TRIAL_FN
    heartbeat: HeartbeatSettings = field(default_factory=HeartbeatSettings)

    def cell_spec(self, cell: Cell) -> StudySpec:
        return StudySpec(
            storage=self.storage, study_name=f"{self.name}/{cell.key}", task=cell.task,
            model=cell.model, space=self.space, strategy="grid", n_trials=10**9,
            method=cell.method, settings=replace(self.settings, train_size=cell.train_size),
            direction=self.directions.get(cell.task, "max"), trial_fn=self.trial_fn,
            heartbeat=self.heartbeat, kind="grid",
        )

    def size(self) -> int:
        space = load_space(self.space)
        return sum(space.size(self.cell_spec(c).context) for c in self.cells)


class _Heartbeat:
    """Beat for a claimed trial (what ``study.optimize`` does for the trials it asks)."""

    def __init__(self, storage: Any, trial_id: int, interval: float) -> None:
        self._storage, self._trial_id, self._interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._storage.record_heartbeat(self._trial_id)

    def __enter__(self) -> _Heartbeat:
        self._storage.record_heartbeat(self._trial_id)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _claim(study: Any) -> Any | None:
    """Atomically move one WAITING trial to RUNNING; None when the queue is empty."""
    import optuna
    from optuna.trial import TrialState

    storage = study._storage
    for t in storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                return optuna.Trial(study, t._trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def run_claimed(study: Any, objective: Objective, trial: Any, interval: float) -> None:
    """Run one claimed trial and tell its outcome (failures are stored, never raised)."""
    import optuna
    from optuna.trial import TrialState

    def tell(*args: Any, **kwargs: Any) -> None:
        try:
            study.tell(trial, *args, **kwargs)
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
            # Already finished: its heartbeat went silent (an overloaded machine) and another
            # worker failed it and enqueued a retry. The retry's result is the one that counts.
            pass

    with _Heartbeat(study._storage, trial._trial_id, interval):
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            tell(state=TrialState.PRUNED)
            return
        except TrialFailed:
            tell(state=TrialState.FAIL)
            return
        except BaseException:
            tell(state=TrialState.FAIL)
            raise
    tell(value)


def run_grid_worker(spec: GridSpec, *, max_trials: int | None = None) -> int:
    """Claim and run grid points cell by cell until every cell is done. Safe in parallel."""
    import optuna

    ran = 0
    space = load_space(spec.space)
    specs = [spec.cell_spec(c) for c in spec.cells]
    studies = []
    for s in specs:
        study = prepare_study(s)
        studies.append(optuna.load_study(study_name=s.study_name, storage=study._storage,
                                         sampler=optuna.samplers.RandomSampler(seed=0),
                                         pruner=optuna.pruners.NopPruner()))
    while True:
        busy_elsewhere = False
        for s, study in zip(specs, studies, strict=True):
            objective = _objective(s, space)
            while max_trials is None or ran < max_trials:
                _fail_stale(study)
                trial = _claim(study)
                if trial is None:
                    break
                run_claimed(study, objective, trial, spec.heartbeat.interval)
                ran += 1
            if max_trials is not None and ran >= max_trials:
                return ran
            c = counts(study)
            busy_elsewhere |= c.running > 0 or c.waiting > 0
        if not busy_elsewhere:
            return ran
        # Other workers hold the last trials; wait and take over the retries of dead ones.
        time.sleep(max(1.0, spec.heartbeat.interval / 2))


# ------------------------------------------------------------------------------------------
# summaries


@dataclass(frozen=True)
class BestTrial:
    number: int
    value: float
    config: dict[str, Any]
    metrics: dict[str, Any]
    config_id: str | None


def best_trial(study: Any) -> BestTrial | None:
    ok = [(r.score, r) for r in study_records(study) if r.status == "ok" and r.score is not None]
    if not ok:
        return None
    maximize = study.direction.name == "MAXIMIZE"
    score, best = (max if maximize else min)(ok, key=lambda p: p[0])
    return BestTrial(number=best.number, value=float(score), config=dict(best.config),
                     metrics=dict(best.metrics), config_id=best.config_id)


def trial_rows(study: Any) -> list[dict[str, Any]]:
    """One JSON-able dict per trial of a study (for --json and the display)."""
    return [_trial_row(r) for r in study_records(study)]


def _trial_row(r: TrialRecord) -> dict[str, Any]:
    return {"number": r.number, "state": r.state.lower(),
            "value": r.values[0] if r.values else None, "status": r.status,
            "config": r.config, "config_id": r.config_id, "error": r.error,
            "runtime_s": r.runtime_s, "retry_of": r.retry_of}
