"""Progress of running studies on stderr, for every kind of output.

A terminal gets a live Rich panel (done/total, running, failed, best, ETA) redrawn in place.
Anything else (nohup, Slurm, CI logs, ``2> log``), where a redrawn panel shows nothing until the
end, gets one line per event: a trial started (with its config id), finished with its score,
was pruned or failed (the first line of its reason), each with the best so far, the trials done
of the total and an ETA.

A background thread polls the storage (its own connection), so the trials of every worker show,
including those of other processes or machines on the same storage. The ETA comes from the
durations of finished trials, not from the elapsed time: (mean duration x trials left, less the
time running trials have already put in) / trials running at once.

The CLI hands over the console and decides quietness; nothing here prints on its own.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from staytuned.search.records import TrialRecord

log = logging.getLogger(__name__)

Mode = Literal["auto", "live", "lines", "off"]
EventKind = Literal["started", "ok", "failed", "pruned", "interrupted"]


@dataclass(frozen=True)
class Snapshot:
    """Counts, best trial and timing of the studies shown."""

    total: int
    done: int = 0
    complete: int = 0
    failed: int = 0
    pruned: int = 0
    running: int = 0
    best_value: float | None = None
    best_config: dict[str, Any] = field(default_factory=dict)
    best_trial: str | None = None  # "trial 3" (with the study's name when several are shown)
    elapsed_s: float = 0.0
    eta_s: float | None = None


@dataclass(frozen=True)
class TrialEvent:
    """Something that happened to one trial between two looks at the storage."""

    kind: EventKind
    trial: str  # "trial 3", or "<study> trial 3" when several studies are shown
    config_id: str
    config: dict[str, Any]
    score: float | None = None
    metric: str | None = None
    reason: str | None = None  # first line of a failed/pruned/interrupted trial's reason
    duration_s: float | None = None
    at: datetime | None = None  # when it happened (the storage's clock)


def _first_line(text: str | None) -> str | None:
    if not text:
        return None
    return next((line.strip() for line in str(text).splitlines() if line.strip()), None)


def _when(e: TrialEvent) -> float:
    return e.at.timestamp() if e.at is not None else math.inf


def _duration(rec: TrialRecord) -> float | None:
    if rec.datetime_start is None or rec.datetime_complete is None:
        return None
    return max(0.0, (rec.datetime_complete - rec.datetime_start).total_seconds())


class ProgressState:
    """What has been seen of the studies: turns successive record lists into events and snapshots.

    Pure bookkeeping (no storage, no output), so that any source of records can drive it.
    ``workers``: trials run at once, for the ETA (default: the most seen running together).
    """

    def __init__(self, total: int, *, maximize: bool = True, workers: int | None = None,
                 several_studies: bool = False) -> None:
        self.total = total
        self.maximize = maximize
        self.workers = workers
        self.several = several_studies
        self._status: dict[tuple[str, int], str] = {}
        self._records: dict[tuple[str, int], TrialRecord] = {}
        self._most_running = 1

    def _label(self, rec: TrialRecord) -> str:
        return f"{rec.study} trial {rec.number}" if self.several else f"trial {rec.number}"

    def update(self, records: Iterable[TrialRecord], *, quiet: bool = False) -> list[TrialEvent]:
        """Take the current records; return what changed since the last call, oldest first.

        ``quiet``: remember the records without events (what a resumed study already holds).
        """
        events: list[tuple[int, TrialEvent]] = []
        for rec in records:
            key = (rec.study, rec.number)
            self._records[key] = rec
            # Enqueued trials (WAITING) are read as "running" but nobody runs them yet.
            status = "waiting" if rec.status == "running" and rec.state == "WAITING" else rec.status
            if status == "running" and "config_id" not in rec.attrs:
                # Claimed by a worker that has not stored its config yet: its id would be the
                # empty config's. Told at the next look.
                status = "waiting"
            before = self._status.get(key)
            self._status[key] = status
            if quiet or status == before or status == "waiting":
                continue
            if before in (None, "waiting"):
                # A trial that started and ended between two looks still shows both events.
                events.append((0, self._event("started", rec)))
            if status != "running":
                events.append((1, self._event(status, rec)))
        running = sum(1 for s in self._status.values() if s == "running")
        self._most_running = max(self._most_running, running)
        return [e for _, e in sorted(events, key=lambda x: (_when(x[1]), x[0]))]

    def _event(self, kind: EventKind, rec: TrialRecord) -> TrialEvent:
        if kind == "started":
            return TrialEvent(kind=kind, trial=self._label(rec), config_id=rec.config_id,
                              config=dict(rec.config), at=rec.datetime_start)
        reason = _first_line(rec.error)
        if kind == "pruned" and reason is None and rec.epoch_scores:
            # A pruner stops a trial on its per-epoch validation scores: say where it stood.
            last = rec.epoch_scores[-1]
            reason = f"at epoch {len(rec.epoch_scores)}" + (
                f", {rec.metric or 'score'} {last:.4f}" if isinstance(last, int | float) else "")
        return TrialEvent(kind=kind, trial=self._label(rec), config_id=rec.config_id,
                          config=dict(rec.config), score=rec.score, metric=rec.metric,
                          reason=reason, duration_s=_duration(rec), at=rec.datetime_complete)

    def snapshot(self, elapsed_s: float, now: datetime | None = None, *,
                 as_of: datetime | None = None) -> Snapshot:
        """Counts, best and ETA now, or as they were at ``as_of`` (the moment of an event, when
        one look at the storage found several). ``now``: the wall clock of the storage's
        datetimes (local time, as Optuna writes them)."""
        at = as_of or now or datetime.now()
        finished: list[TrialRecord] = []
        running: list[TrialRecord] = []
        for r in self._records.values():
            ended = r.finished and (as_of is None or r.datetime_complete is None
                                    or r.datetime_complete <= as_of)
            if ended:
                finished.append(r)
            elif (r.state == "RUNNING" or r.finished) and (
                    as_of is None or (r.datetime_start is not None and r.datetime_start <= as_of)):
                running.append(r)  # running now, or at ``as_of`` for a trial that ended since
        complete = [r for r in finished if r.status == "ok" and r.score is not None]
        failed = sum(1 for r in finished if r.status == "failed")
        pruned = sum(1 for r in finished if r.status == "pruned")
        done = len(complete) + failed + pruned
        best = None
        if complete:
            pick = max if self.maximize else min
            best = pick(complete, key=lambda r: math.nan if r.score is None else r.score)  # never None here
        return Snapshot(
            total=self.total, done=done, complete=len(complete), failed=failed, pruned=pruned,
            running=len(running), best_value=None if best is None else best.score,
            best_config={} if best is None else dict(best.config),
            best_trial=None if best is None else self._label(best), elapsed_s=elapsed_s,
            eta_s=self._eta(finished, running, done, at),
        )

    def _eta(self, finished: Sequence[TrialRecord], running: Sequence[TrialRecord], done: int,
             now: datetime) -> float | None:
        left = self.total - done
        if left <= 0:
            return 0.0
        durations = [d for r in finished if (d := _duration(r)) is not None]
        if not durations:
            return None
        mean = sum(durations) / len(durations)
        # Trials under way are part of what is left, minus the time they have already run.
        spent = sum(min(mean, max(0.0, (now - r.datetime_start).total_seconds()))
                    for r in running if r.datetime_start is not None)
        at_once = self.workers or max(self._most_running, len(running), 1)
        return max(0.0, left * mean - spent) / at_once


def render(s: Snapshot, title: str) -> Any:
    """The live panel of a snapshot (a Rich renderable)."""
    from rich.table import Table

    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    bar_w = 30
    frac = min(1.0, s.done / s.total) if s.total else 0.0
    bar = "█" * int(bar_w * frac) + "░" * (bar_w - int(bar_w * frac))
    table.add_row(title, f"{bar} {s.done}/{s.total} done")
    table.add_row("trials", f"{s.running} running, {s.complete} ok, {s.failed} failed, {s.pruned} pruned")
    best = "-" if s.best_value is None else f"{s.best_value:.4f}  " + ", ".join(
        f"{k}={_fmt(v)}" for k, v in s.best_config.items())
    table.add_row("best", best)
    eta = "-" if s.eta_s is None else format_duration(s.eta_s)
    table.add_row("time", f"elapsed {format_duration(s.elapsed_s)}, ETA {eta}")
    return table


def event_line(e: TrialEvent, s: Snapshot) -> str:
    """One log line for an event (with the progress after it for trials that ended)."""
    stamp = (e.at or datetime.now()).strftime("%H:%M:%S")
    if e.kind == "started":
        config = ", ".join(f"{k}={_fmt(v)}" for k, v in e.config.items())
        return f"[{stamp}] {e.trial} started: config {e.config_id}" + (f" ({config})" if config else "")
    took = "" if e.duration_s is None else f" after {format_duration(e.duration_s)}"
    if e.kind == "ok":
        score = "-" if e.score is None else f"{e.score:.4f}"
        what = f"finished{took}: {e.metric or 'score'} {score}"
    elif e.kind == "pruned":
        what = f"pruned{took}" + (f": {e.reason}" if e.reason else "")
    elif e.kind == "failed":
        what = f"failed{took}: {e.reason or 'no reason stored'}"
    else:
        what = f"interrupted: {e.reason or 'its worker stopped'}"
    return f"[{stamp}] {e.trial} {what} | {progress_text(s)}"


def progress_text(s: Snapshot) -> str:
    """'best 0.8125 (trial 3) | 4/12 done | ETA 5m20s'."""
    best = "best -" if s.best_value is None else f"best {s.best_value:.4f} ({s.best_trial})"
    eta = "-" if s.eta_s is None else format_duration(s.eta_s)
    return f"{best} | {s.done}/{s.total} done | ETA {eta}"


def summary_line(s: Snapshot) -> str:
    stamp = time.strftime("%H:%M:%S")
    best = "no successful trial" if s.best_value is None else \
        f"best {s.best_value:.4f} ({s.best_trial})"
    return (f"[{stamp}] {s.done}/{s.total} done ({s.complete} ok, {s.failed} failed, "
            f"{s.pruned} pruned) after {format_duration(s.elapsed_s)}; {best}")


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def format_duration(sec: float) -> str:
    """Seconds as 4.2s, 42s, 3m05s or 1h02m ("-" when not finite)."""
    if not math.isfinite(sec):
        return "-"
    if sec < 10:
        return f"{sec:.1f}s"
    sec = round(sec)
    if sec >= 3600:
        return f"{sec // 3600}h{sec // 60 % 60:02d}m"
    return f"{sec // 60}m{sec % 60:02d}s" if sec >= 60 else f"{sec}s"


def read_study_records(storage: Any, names: Sequence[str]) -> list[TrialRecord]:
    """The records of the studies ``names`` that exist in ``storage`` (others are skipped)."""
    import optuna

    from staytuned.search.records import study_records

    out: list[TrialRecord] = []
    for name in names:
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:  # not created yet (a grid cell, a study another process creates)
            continue
        out.extend(study_records(study))
    return out


class StudyProgress:
    """Context manager: report the progress of studies ``names`` of a storage while they run.

    ``mode``: "live" (the Rich panel), "lines" (one line per event), "off", or "auto": the panel
    on a terminal, lines anywhere else. ``total``: trials the studies end with.
    """

    def __init__(self, console: Any, storage_url: str, names: Sequence[str], total: int, *,
                 title: str = "study", maximize: bool = True, interval: float = 1.0,
                 mode: Mode = "auto", workers: int | None = None) -> None:
        self._console, self._url, self._names = console, storage_url, list(names)
        self._title, self._interval = title, interval
        if mode == "auto":
            mode = "live" if console.is_terminal else "lines"
        self.mode: Mode = mode
        self.state = ProgressState(total, maximize=maximize, workers=workers,
                                   several_studies=len(self._names) > 1)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live: Any = None
        self._started = 0.0
        self._storage: Any = None
        self.last: Snapshot | None = None

    # -- one look at the storage ---------------------------------------------------------------
    def _look(self, *, quiet: bool = False) -> None:
        events = self.state.update(read_study_records(self._storage, self._names), quiet=quiet)
        self.last = self.state.snapshot(time.monotonic() - self._started)
        if self.mode == "live":
            self._live.update(render(self.last, self._title))
            return
        for e in events:
            # Each line tells the progress as of its own event, though one look found several.
            self._write(event_line(e, self.state.snapshot(0.0, as_of=e.at)))

    def _write(self, line: str) -> None:
        # soft_wrap: a log line stays one line whatever the console's width.
        self._console.print(line, markup=False, highlight=False, soft_wrap=True)

    def _poll(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._look()
            except Exception:  # a busy SQLite file must never break the run it displays
                log.debug("progress: cannot read the storage now", exc_info=True)

    # -- context manager ------------------------------------------------------------------------
    def __enter__(self) -> StudyProgress:
        if self.mode == "off":
            return self
        from staytuned.search.storage import open_storage

        self._storage = open_storage(self._url)
        self._started = time.monotonic()
        self.state.update(read_study_records(self._storage, self._names), quiet=True)
        self.last = self.state.snapshot(0.0)
        if self.mode == "live":
            from rich.live import Live

            self._live = Live(render(self.last, self._title), console=self._console,
                              refresh_per_second=4, transient=False)
            self._live.__enter__()
        elif self.last.done:
            self._write(f"[{time.strftime('%H:%M:%S')}] resuming: {progress_text(self.last)}")
        self._thread = threading.Thread(target=self._poll, name="staytuned-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        try:  # the final state, not the last poll's
            self._look()
        except Exception:  # the run's result matters more than its last progress line
            log.debug("progress: cannot read the final state", exc_info=True)
        if self.last is not None:
            from dataclasses import replace

            self.last = replace(self.last, eta_s=None)
        if self.mode == "live":
            if self.last is not None:
                self._live.update(render(self.last, self._title))
            self._live.__exit__(None, None, None)
            if not self._console.is_terminal:
                self._console.line()  # Rich ends the panel with a newline on terminals only
        elif self.last is not None:
            self._write(summary_line(self.last))
