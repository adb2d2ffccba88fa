"""Progress of one long command on stderr, for every kind of output.

A terminal gets a Rich bar per phase (transient unless asked to stay); anything else (a log file,
nohup, Slurm, CI) gets one timestamped line per event: a phase started, then its count at most
every :data:`LINE_INTERVAL_S` seconds (and whenever its detail changes) with an ETA from the
pace so far, and the phase's end.
Studies have their own display (:mod:`staytuned.search.display`); this is for the steps of
``simulate``, ``report``, ``cbs evaluate`` and ``train``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from staytuned.search.display import format_duration

#: Off a terminal, the shortest gap between two count lines of one phase.
LINE_INTERVAL_S = 10.0


class StepProgress:
    """``update(phase, done, total)`` as work advances; a new phase name starts a new bar/line."""

    def __init__(self, console: Any, *, quiet: bool = False, transient: bool = True,
                 interval: float = LINE_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._console, self._quiet, self._interval, self._clock = console, quiet, interval, clock
        self._bar: Any = None
        if not quiet and console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, transient=transient)
        self._tasks: dict[str, tuple[Any, int]] = {}  # phase -> (bar task, done)
        self._phase: str | None = None
        self._started = self._last_line = 0.0
        self._done = 0
        self._detail = ""

    def __enter__(self) -> StepProgress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def update(self, phase: str, done: int, total: int | None = None, detail: str = "") -> None:
        """``done`` of ``total`` steps of ``phase``; ``detail`` (e.g. the step now running) is shown
        beside it, and off a terminal a new detail is an event of its own."""
        if self._quiet:
            return
        new = phase != self._phase or done < self._done
        changed = detail != self._detail
        self._phase, self._done, self._detail = phase, done, detail
        label = f"{phase}: {detail}" if detail else phase
        if self._bar is not None:
            task, last = self._tasks.get(phase, (None, 0))
            if task is None or done < last:  # a phase seen before starts a new pass: a new bar
                task = self._bar.add_task(label, total=total)
            self._tasks[phase] = (task, done)
            self._bar.update(task, completed=done, total=total, description=label)
            return
        now = self._clock()
        if new:
            self._started = now
        finished = total is not None and done >= total
        if new or changed or finished or now - self._last_line >= self._interval:
            self._last_line = now
            self._line(f"{label}: {_count(done, total)}{_eta(now - self._started, done, total)}")

    def _line(self, text: str) -> None:
        self._console.print(f"[{time.strftime('%H:%M:%S')}] {text}", markup=False, highlight=False,
                            soft_wrap=True)


@contextlib.contextmanager
def step_progress(console: Any, *, quiet: bool = False, transient: bool = True) -> Iterator[StepProgress]:
    """A :class:`StepProgress` on ``console`` for the duration of the block."""
    with StepProgress(console, quiet=quiet, transient=transient) as progress:
        yield progress


def _count(done: int, total: int | None) -> str:
    if not total:
        return str(done)
    return f"{done}/{total} ({100 * done / total:.0f}%)"


def _eta(elapsed: float, done: int, total: int | None) -> str:
    if not total or done <= 0 or elapsed <= 0:
        return ""
    if done >= total:
        return f", done in {format_duration(elapsed)}"
    return f", ETA {format_duration(elapsed / done * (total - done))}"
