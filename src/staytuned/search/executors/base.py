"""The executor interface: where the workers of a ``tune`` study or a ``grid`` run.

Every executor runs the same worker loop (:func:`staytuned.search.study.run_worker` /
:func:`~staytuned.search.study.run_grid_worker`) against the shared Optuna storage, which holds
all state; executors differ only in where the workers run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from staytuned.errors import InputError

if TYPE_CHECKING:
    from staytuned.hardware.gpus import Workers
    from staytuned.search.study import GridSpec, StudySpec

    RunSpec = StudySpec | GridSpec

Backend = Literal["local", "ray"]
BACKENDS: tuple[str, ...] = ("local", "ray")


@dataclass(frozen=True)
class ExecutorReport:
    """What an executor reports after a run (the study's results are in the storage)."""

    trials_run: int  # by this run's workers
    total: int  # trials the run ends with (budget or grid size)
    details: Mapping[str, Any] | None = None  # the executor's own JSON-able summary, if any
    description: str | None = None  # one line on where the trials ran and what was recovered


class Executor(Protocol):
    """Runs workers of a study (:class:`StudySpec`) or a grid (:class:`GridSpec`)."""

    @property
    def name(self) -> str:
        """The backend's name ("local", "ray"): the key of its details in JSON output."""

    def check(self, workers: Workers) -> None:
        """Raise InputError for settings it cannot run, before any study is created."""

    def describe(self, workers: Workers) -> str:
        """A few words on where the workers will run, e.g. "2 workers, GPU 0 and GPU 1"."""

    def resolve(self, workers: Workers) -> int | None:
        """How many workers ``workers`` ("auto", a number, None) means here (None: the backend
        decides as it runs, e.g. as many as a Ray cluster holds)."""

    def run(self, spec: RunSpec, *, workers: Workers = None) -> ExecutorReport:
        """Run (or resume) until the study or grid is done; ``workers``: a number or "auto"."""


def worker_loop(spec: RunSpec) -> int:
    """The loop each worker runs, whatever executor started it; returns the trials it ran."""
    from staytuned.search.study import GridSpec, run_grid_worker, run_worker

    return run_grid_worker(spec) if isinstance(spec, GridSpec) else run_worker(spec)


def total_of(spec: RunSpec) -> int:
    """Trials a study (its budget) or a grid (its size) ends with."""
    from staytuned.search.study import GridSpec, budget_of

    if isinstance(spec, GridSpec):
        return spec.size()
    return budget_of(spec, spec.load_space())


def check_workers(workers: Workers, name: str = "workers", *, auto: bool = True) -> None:
    """A positive number of workers, None (the default), or "auto" when ``auto``; ``name``: the
    caller's parameter, for the error."""
    if workers is None or (auto and workers == "auto"):
        return
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise InputError("must be a positive integer" + (" or 'auto'" if auto else ""),
                         field=name, value=workers)


def make_executor(backend: str = "local", *, ray_address: str | None = None,
                  cpus_per_trial: float = 1.0, gpus_per_trial: float | None = None,
                  share_gpus: bool = False) -> Executor:
    """The executor of ``backend``: ``local`` (processes on this machine) or ``ray``.

    ``gpus_per_trial`` (both backends): GPUs each trial holds; default 1 where there are GPUs,
    0 without. Local workers get their own GPUs (``CUDA_VISIBLE_DEVICES``), more workers than
    the GPUs hold is an error unless ``share_gpus``; Ray requests ``num_gpus`` per trial
    (fractions share a GPU there). ``ray_address`` and ``cpus_per_trial`` are Ray's only:
    the local backend refuses values other than their defaults rather than ignore them.
    """
    if backend == "local":
        for name, value, default in (("ray_address", ray_address, None),
                                     ("cpus_per_trial", cpus_per_trial, 1.0)):
            if value != default:
                raise InputError("only the ray backend uses it", field=name, value=value,
                                 expected="backend 'ray', or leave it unset")
        from staytuned.search.executors.local import LocalExecutor

        return LocalExecutor(gpus_per_trial=gpus_per_trial, share_gpus=share_gpus)
    if backend == "ray":
        if share_gpus:
            raise InputError("only the local backend uses it", field="share_gpus",
                             value=share_gpus, expected="a fraction of `gpus_per_trial` "
                             "(0.5 = two trials per GPU) to share GPUs on Ray")
        from staytuned.search.executors.ray import RayExecutor

        return RayExecutor(address=ray_address, cpus_per_trial=cpus_per_trial,
                           gpus_per_trial=gpus_per_trial)
    raise InputError("unknown backend", field="backend", value=backend,
                     expected=" or ".join(BACKENDS))
