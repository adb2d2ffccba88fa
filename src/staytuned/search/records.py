"""One stored trial, one type: :class:`TrialRecord`, its one writer and its one reader.

A trial lives in an Optuna storage as a trial whose user_attrs staytuned writes (names in
docs/CONTRACTS.md "Storage / results"). Every objective writes them with :func:`cell_attrs`,
:func:`result_attrs` and :func:`write_record`; every consumer (results export, report, study
summaries, config export, decoding summaries) reads them with :func:`read_record` /
:func:`read_records`, so the Optuna state -> status rule and the treatment of trials whose
worker died exist once.

Light module: Optuna is imported only inside :func:`read_records` (reading one trial needs
nothing but the trial).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args

from staytuned.errors import InputError
from staytuned.hparams.schema import EXECUTION_SETTINGS, execution_error
from staytuned.search.space import config_id

if TYPE_CHECKING:
    from optuna.storages import BaseStorage
    from optuna.study import Study
    from optuna.trial import FrozenTrial

TrialStatus = Literal["ok", "failed", "pruned", "running", "interrupted"]
STATUSES: tuple[TrialStatus, ...] = get_args(TrialStatus)
#: Statuses of trials that ended by themselves: they count towards a study's budget and are
#: rows of the results table. An interrupted trial is retried as another trial instead.
FINISHED: frozenset[TrialStatus] = frozenset({"ok", "failed", "pruned"})
INTERRUPTED_ERROR = "interrupted: the worker running it stopped (killed or crashed)"
MAX_CURVE_POINTS = 200  # keep user_attrs small: the storage row is JSON text

# The user_attr every staytuned objective sets before a trial ends: a failed trial without it
# never finished (its process was killed, or the heartbeat check failed it).
_STATUS_ATTR = "status"
_OPTUNA_STATUS: dict[str, TrialStatus] = {"COMPLETE": "ok", "PRUNED": "pruned", "FAIL": "failed",
                                          "RUNNING": "running", "WAITING": "running"}


class _AttrTrial(Protocol):
    def set_user_attr(self, key: str, value: Any) -> None: ...


@dataclass(frozen=True)
class TrialRecord:
    """One trial as staytuned stored it (or a plain Optuna trial, read the same way).

    ``config`` holds hyperparameters only; execution settings a trial recorded (precision,
    device, micro-batch, threads ...) are in ``execution``. ``score`` is the objective value of
    a complete trial and the stored (partial) score otherwise; ``values`` has every objective
    of a multi-objective trial. ``state`` is Optuna's state name, kept for displays.
    """

    number: int
    study: str
    status: TrialStatus
    state: str
    config: dict[str, Any]
    config_id: str
    task: str | None = None
    model: str | None = None
    method: str | None = None
    train_size: int | None = None
    seed: int | None = None
    metric: str | None = None
    score: float | None = None
    values: tuple[float, ...] | None = None
    score_test: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    runtime_s: float | None = None
    train_runtime_s: float | None = None
    eval_runtime_s: float | None = None
    loss_curve: list[list[float]] = field(default_factory=list)
    epoch_scores: list[float | None] = field(default_factory=list)
    train_tokens_per_s: float | None = None
    peak_memory_mb: float | None = None
    n_train: int | None = None
    n_eval: int | None = None
    versions: dict[str, str] = field(default_factory=dict)
    execution: dict[str, Any] = field(default_factory=dict)
    datetime_start: datetime | None = None
    datetime_complete: datetime | None = None
    retry_of: int | None = None  # number of the interrupted trial this one re-runs
    attrs: dict[str, Any] = field(default_factory=dict, repr=False)  # every stored user_attr

    @property
    def finished(self) -> bool:
        """Ended by itself (ok, failed or pruned)."""
        return self.status in FINISHED


# ------------------------------------------------------------------------------------ writer


def cell_attrs(*, task: str, model: str | None, method: str | None, train_size: int | None,
               seed: int | None, config: Mapping[str, Any],
               versions: Mapping[str, str]) -> dict[str, Any]:
    """What a trial stores before it runs: its cell, config and config id (so a trial whose
    worker dies still says what it was running)."""
    for name in config:
        if name in EXECUTION_SETTINGS:
            raise execution_error(name, field=f"config.{name}")
    return {"task": task, "model": model, "method": method, "train_size": train_size,
            "seed": seed, "config_id": config_id(config), "config": dict(config),
            "versions": dict(versions)}


def result_attrs(result: Mapping[str, Any], *,
                 execution: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a trial stores when it ends, from its result mapping (``TrialResult.to_dict()``).

    The status is one of :data:`FINISHED`: "ok" needs a finite score (else "failed", with a
    reason). Execution settings come from ``execution`` (what the study asked for), then the
    result's own ``execution`` mapping and its execution-setting keys (what the trial chose).
    """
    status = str(result.get("status") or "ok")
    error = result.get("error") or None
    score = _float(result.get("score"))
    if status not in FINISHED:
        status, error = "failed", f"unknown trial status {status!r}" + (f": {error}" if error else "")
    elif status == "ok" and score is None:
        status, error = "failed", error or "no score"
    run_settings: dict[str, Any] = {}
    # What the trial reports it ran with (e.g. the precision "auto" resolved to) wins over what
    # the study asked for.
    for source in (execution or {}, result.get("execution") or {}, result):
        run_settings.update({k: v for k, v in source.items()
                             if k in EXECUTION_SETTINGS and not _unset(v)})
    return {
        "status": status, "error": None if status == "ok" else (str(error) if error else None),
        "metrics": _jsonable(result.get("metrics") or {}), "metric": result.get("metric"),
        "score": score, "runtime_s": _float(result.get("runtime_s")),
        "train_tokens_per_s": _float(result.get("train_tokens_per_s")),
        "peak_memory_mb": _float(result.get("peak_memory_mb")),
        "loss_curve": _jsonable(_thin(list(result.get("loss_curve") or []))),
        "epoch_scores": _jsonable(list(result.get("epoch_scores") or [])),
        "n_train": result.get("n_train"), "n_eval": result.get("n_eval"),
        "train_runtime_s": _float(result.get("train_runtime_s")),
        "eval_runtime_s": _float(result.get("eval_runtime_s")),
        "score_test": _float(result.get("score_test")),
        "execution": _jsonable(run_settings),
    }


def write_record(trial: _AttrTrial, attrs: Mapping[str, Any]) -> None:
    """Store ``attrs`` (from :func:`cell_attrs` / :func:`result_attrs`) as the trial's user_attrs."""
    for key, value in attrs.items():
        trial.set_user_attr(key, value)


def _unset(v: Any) -> bool:
    # TrialResult says "not chosen" with 0 (micro_batch_size); False is a real setting.
    return v is None or (isinstance(v, int) and not isinstance(v, bool) and v == 0)


def _thin(curve: list[Any]) -> list[Any]:
    """At most MAX_CURVE_POINTS points: keep the shape (and the last point), drop points evenly."""
    if len(curve) <= MAX_CURVE_POINTS:
        return curve
    stride = math.ceil(len(curve) / MAX_CURVE_POINTS)
    return curve[::stride] + ([curve[-1]] if (len(curve) - 1) % stride else [])


# ------------------------------------------------------------------------------------ reader


def read_record(trial: FrozenTrial, study_name: str, *,
                study_attrs: Mapping[str, Any] | None = None) -> TrialRecord:
    """The record of one stored trial.

    Status: COMPLETE -> ok (failed if its objective value is not finite), PRUNED -> pruned,
    RUNNING/WAITING -> running, FAIL -> failed, or
    interrupted when the trial never stored its own status: its worker stopped mid-trial
    (killed, crashed, or failed by the heartbeat check). That is told apart in staytuned's
    trials (they store their cell first) and in staytuned's studies (``study_attrs`` has a
    ``kind``); in other Optuna studies a FAIL is a failure.

    Configs stored by older versions held execution settings (``precision``): they move to
    ``execution`` and the config id is recomputed without them. ``study_attrs`` supplies the
    cell (task, model) a trial did not store.
    """
    ua = dict(trial.user_attrs)
    sa = study_attrs or {}
    state = trial.state.name
    status = _OPTUNA_STATUS.get(state, "failed")
    staytuned_trial = "config_id" in ua or "kind" in sa
    if status == "failed" and _STATUS_ATTR not in ua and staytuned_trial:
        status = "interrupted"
    values = tuple(float(v) for v in trial.values) if trial.values else None
    if status == "ok" and not (values and math.isfinite(values[0])):
        status = "failed"  # Optuna keeps an infinite objective value as complete; it is no score
    stored = ua.get("config")
    raw = dict(stored) if isinstance(stored, Mapping) else dict(trial.params)
    raw.pop("model", None)  # a cell axis, also when searched as a categorical parameter
    config = {k: v for k, v in raw.items() if k not in EXECUTION_SETTINGS}
    legacy = {k: v for k, v in raw.items() if k in EXECUTION_SETTINGS}
    execution = {**(ua.get("execution") or {}), **legacy}
    cid = ua.get("config_id")
    if legacy or cid is None:
        cid = config_id(config)
    score = values[0] if status == "ok" and values else _float(ua.get("score"))
    if status == "ok":
        error = None
    elif status == "interrupted":
        error = INTERRUPTED_ERROR
    else:
        reason = ua.get("error") or trial.system_attrs.get("fail_reason")
        if reason is None and status == "failed" and values:
            reason = "the objective value is not finite"
        error = None if reason is None else str(reason)
    metrics = ua.get("metrics")
    return TrialRecord(
        number=trial.number, study=study_name, status=status, state=state, config=config,
        config_id=str(cid),
        task=_str(ua.get("task") or ua.get("dataset") or sa.get("task")),
        model=_str(ua.get("model") or sa.get("model")),
        method=_str(ua["method"] if "method" in ua else config.get("method")),
        train_size=ua.get("train_size"), seed=ua.get("seed"),
        metric=_str(ua.get("metric")), score=score, values=values,
        score_test=_float(ua.get("score_test")),
        metrics=dict(metrics) if isinstance(metrics, Mapping) else {},
        error=error,
        runtime_s=_float(ua.get("runtime_s")), train_runtime_s=_float(ua.get("train_runtime_s")),
        eval_runtime_s=_float(ua.get("eval_runtime_s")),
        loss_curve=list(ua.get("loss_curve") or []), epoch_scores=list(ua.get("epoch_scores") or []),
        train_tokens_per_s=_float(ua.get("train_tokens_per_s")),
        peak_memory_mb=_float(ua.get("peak_memory_mb")),
        n_train=ua.get("n_train"), n_eval=ua.get("n_eval"),
        versions=dict(ua.get("versions") or {}), execution=execution,
        datetime_start=trial.datetime_start, datetime_complete=trial.datetime_complete,
        retry_of=trial.system_attrs.get("failed_trial"), attrs=ua,
    )


def study_records(study: Study) -> list[TrialRecord]:
    """Records of every trial of an open study, in trial order."""
    attrs = study.user_attrs
    return [read_record(t, study.study_name, study_attrs=attrs)
            for t in study.get_trials(deepcopy=False)]


def read_records(storage: str | BaseStorage, study_name: str | None = None) -> list[TrialRecord]:
    """Records of the trials of ``study_name`` (every study when None) in a storage.

    ``storage`` is a URL (opened with :func:`staytuned.search.storage.open_storage`) or an open
    Optuna storage.
    """
    import optuna

    if isinstance(storage, str):
        from staytuned.search.storage import open_storage

        storage = open_storage(storage)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    if study_name is not None:
        if study_name not in names:
            raise InputError("no such study in the storage", field="study_name", value=study_name,
                             expected=", ".join(names[:20]) or "a storage with a study")
        names = [study_name]
    out: list[TrialRecord] = []
    for name in names:
        out.extend(study_records(optuna.load_study(study_name=name, storage=storage)))
    return out


# ------------------------------------------------------------------------------------ values


def _float(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _str(v: Any) -> str | None:
    return None if v is None else str(v)


def _jsonable(obj: Any) -> Any:
    """Plain JSON values: non-finite floats -> None, numpy scalars -> Python numbers."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item"):
        return _jsonable(obj.item())
    return obj
