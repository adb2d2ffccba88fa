"""The local executor: N worker processes on this machine sharing one storage.

Each process runs the worker loop (:func:`staytuned.search.executors.base.worker_loop`) on the
same picklable spec; the storage does the coordination (enqueued trials are claimed atomically,
TPE uses constant liar, GP and cbs-adaptive plan each config under the storage lock). Processes
are started with ``spawn`` (no forked torch/SQLite state) and die with their parent on Linux, so
a killed ``staytuned tune`` leaves no orphan writing to the storage.

On a GPU machine each worker gets its own GPU (or ``gpus_per_trial``), see
:mod:`staytuned.hardware.gpus`: its ``CUDA_VISIBLE_DEVICES`` is in the environment the process
starts with, so torch (imported later, in the trial) sees only those. A spawned process starts
fresh, so whatever CUDA state this process holds (e.g. from scoring the untuned model) never
reaches a worker.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing as mp
import os
import queue as queue_mod
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from staytuned.errors import StaytunedError
from staytuned.search.executors.base import (
    ExecutorReport,
    check_workers,
    total_of,
    worker_loop,
)

if TYPE_CHECKING:
    from staytuned.hardware.gpus import Workers
    from staytuned.search.executors.base import RunSpec

_ENV_LOCK = threading.Lock()


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def _quiet() -> None:
    """A spawned process starts with default logging: keep Optuna's INFO lines off the display."""
    import warnings

    import optuna

    from staytuned._noise import quiet_third_party_warnings

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    quiet_third_party_warnings()  # a spawned process starts with the default filters


def threads_per_worker(workers: int, requested: int | None = None) -> int:
    """CPU threads each of ``workers`` processes may use: oversubscribed torch threads on a
    small machine run several times slower than one thread each (see staytuned.hardware.threads).
    ``requested`` is the study's ``threads`` execution setting, when given."""
    from staytuned.hardware.threads import threads_per_worker as choose

    return choose(workers, requested=requested).threads


def _limit_threads(threads: int) -> None:
    # Spawned children have not imported torch yet, so the environment still decides its pool.
    # A value the user exported wins.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))


def _entry(target: Callable[..., int], spec: Any, queue: Any, verbose: bool,
           threads: int | None = None) -> None:
    _die_with_parent()
    if threads is not None:
        _limit_threads(threads)
    if not verbose:
        _quiet()
    try:
        queue.put(("ok", target(spec)))
    except StaytunedError as exc:
        queue.put(("error", str(exc)))
    except BaseException as exc:  # report, then let the process end
        queue.put(("crash", f"{type(exc).__name__}: {exc}"))


def for_worker(spec: Any, index: int) -> Any:
    """Worker i samples with seed + i: identical seeds would make every worker's random
    (startup) trials the same configs. The trials' own seed (settings.seed) is unchanged."""
    if index and dataclasses.is_dataclass(spec) and not isinstance(spec, type) and hasattr(spec, "seed"):
        return dataclasses.replace(spec, seed=spec.seed + index)
    return spec


@contextlib.contextmanager
def _child_env(name: str, value: str | None) -> Iterator[None]:
    """``name=value`` in the environment a process started in the block inherits (``None``:
    unchanged); this process's own value is restored after."""
    if value is None:
        yield
        return
    with _ENV_LOCK:
        old = os.environ.get(name)
        os.environ[name] = value
        try:
            yield
        finally:
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def run_processes(target: Callable[..., int], spec: Any, workers: int,
                  verbose: bool = False, gpus: Sequence[str | None] | None = None) -> list[int]:
    """Run ``target(spec)`` in ``workers`` processes (in this process when 1); trials run each.

    ``gpus``: each worker's ``CUDA_VISIBLE_DEVICES`` (None: inherited); a single worker with a
    value there runs in a process of its own too (this one may have started CUDA already).
    Raises the first worker error after all workers have ended.
    """
    from staytuned.hardware.gpus import GPU_ENV

    gpus = list(gpus) if gpus is not None else [None] * workers
    if workers <= 1 and gpus[0] is None:
        return [target(spec)]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    settings = getattr(spec, "settings", None)
    threads = threads_per_worker(workers, getattr(getattr(settings, "execution", None), "threads", None))
    procs = [ctx.Process(target=_entry, args=(target, for_worker(spec, i), queue, verbose, threads),
                         daemon=True) for i in range(workers)]
    for p, devices in zip(procs, gpus, strict=True):
        with _child_env(GPU_ENV, devices):  # set before the child's interpreter (and torch) starts
            p.start()
    results: list[tuple[str, Any]] = []
    try:
        while len(results) < len(procs):
            try:
                results.append(queue.get(timeout=1.0))
            except queue_mod.Empty:
                if not any(p.is_alive() for p in procs):  # killed without a word (OOM, kill -9)
                    dead = len(procs) - len(results)
                    results += [("crash", "worker process died")] * dead
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
    errors = [msg for kind, msg in results if kind != "ok"]
    if errors:
        raise StaytunedError(f"a worker stopped: {errors[0]}")
    return [n for kind, n in results if kind == "ok"]


@dataclass(frozen=True)
class LocalExecutor:
    """Workers as processes on this machine (in this process when there is one and it needs no
    GPUs of its own). ``gpus_per_trial``/``share_gpus``: see :mod:`staytuned.hardware.gpus`;
    ``gpu_ids``: the GPUs to hand out (default: those this process sees)."""

    gpus_per_trial: float | None = None
    share_gpus: bool = False
    gpu_ids: tuple[str, ...] | None = None
    name: str = "local"

    def _gpus(self) -> tuple[str, ...]:
        from staytuned.hardware.gpus import visible_gpus

        return visible_gpus() if self.gpu_ids is None else self.gpu_ids

    def resolve(self, workers: Workers) -> int:
        check_workers(workers)
        if workers == "auto":
            from staytuned.hardware.gpus import auto_workers

            return auto_workers(len(self._gpus()), self.gpus_per_trial)
        return workers or 1

    def assign(self, workers: Workers) -> list[str | None]:
        """Each worker's ``CUDA_VISIBLE_DEVICES`` (None: inherited); InputError when they do
        not fit on the GPUs."""
        from staytuned.hardware.gpus import assign_gpus

        return assign_gpus(self.resolve(workers), self._gpus(), self.gpus_per_trial,
                           self.share_gpus)

    def check(self, workers: Workers) -> None:
        self.assign(workers)

    def describe(self, workers: Workers) -> str:
        from staytuned.hardware.gpus import describe_gpus

        return describe_gpus(self.assign(workers))

    def run(self, spec: RunSpec, *, workers: Workers = None,
            verbose: bool = False) -> ExecutorReport:
        gpus = self.assign(workers)
        if gpus == [",".join(self._gpus())]:
            gpus = [None]  # one worker that may use every GPU this process sees: run it here
        ran = sum(run_processes(worker_loop, spec, len(gpus), verbose=verbose, gpus=gpus))
        return ExecutorReport(trials_run=ran, total=total_of(spec))
