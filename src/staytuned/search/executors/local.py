"""The local executor: N worker processes on this machine sharing one storage.

Each process runs the worker loop (:func:`staytuned.search.executors.base.worker_loop`) on the
same picklable spec; the storage does the coordination (enqueued trials are claimed atomically,
TPE uses constant liar, GP and cbs-adaptive plan each config under the storage lock). Processes
are started with ``spawn`` (no forked torch/SQLite state) and die with their parent on Linux, so
a killed ``staytuned tune`` leaves no orphan writing to the storage.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import queue as queue_mod
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from staytuned.errors import StaytunedError
from staytuned.search.executors.base import (
    ExecutorReport,
    check_workers,
    total_of,
    worker_loop,
)

if TYPE_CHECKING:
    from staytuned.search.executors.base import RunSpec


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


def run_processes(target: Callable[..., int], spec: Any, workers: int,
                  verbose: bool = False) -> list[int]:
    """Run ``target(spec)`` in ``workers`` processes (in this process when 1); trials run each.

    Raises the first worker error after all workers have ended.
    """
    if workers <= 1:
        return [target(spec)]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    settings = getattr(spec, "settings", None)
    threads = threads_per_worker(workers, getattr(getattr(settings, "execution", None), "threads", None))
    procs = [ctx.Process(target=_entry, args=(target, for_worker(spec, i), queue, verbose, threads),
                         daemon=True) for i in range(workers)]
    for p in procs:
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


class LocalExecutor:
    """Workers as processes on this machine (in this process when there is one)."""

    name = "local"

    def check(self, workers: int | None) -> None:
        check_workers(workers)

    def describe(self, workers: int | None) -> str:
        return f"{workers or 1} worker(s)"

    def run(self, spec: RunSpec, *, workers: int | None = None,
            verbose: bool = False) -> ExecutorReport:
        self.check(workers)
        ran = sum(run_processes(worker_loop, spec, workers or 1, verbose=verbose))
        return ExecutorReport(trials_run=ran, total=total_of(spec))
