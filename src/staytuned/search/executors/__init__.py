"""Executors: where the workers of a study run (local processes, a Ray cluster), behind one
interface (:class:`Executor`). Light at import: Ray is imported only to run."""

from __future__ import annotations

from staytuned.search.executors.base import (
    BACKENDS,
    Executor,
    ExecutorReport,
    make_executor,
    worker_loop,
)

__all__ = ["BACKENDS", "Executor", "ExecutorReport", "make_executor", "worker_loop"]
