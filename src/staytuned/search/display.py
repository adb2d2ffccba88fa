"""Live Rich display of a running study on stderr: done/total, running, failed, best, ETA.

A background thread polls the storage (its own connection), so it shows every worker's trials,
including those of other processes or machines on the same storage.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Snapshot:
    total: int
    done: int = 0
    complete: int = 0
    failed: int = 0
    pruned: int = 0
    running: int = 0
    best_value: float | None = None
    best_config: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0
    eta_s: float | None = None


def snapshot(storage: Any, names: Sequence[str], total: int, started: float, done_at_start: int,
             maximize: bool = True) -> Snapshot:
    """Counts and best trial over the studies ``names`` of ``storage``."""
    import optuna
    from optuna.trial import TrialState

    from staytuned.search.study import counts

    done = complete = failed = pruned = running = 0
    best_v: float | None = None
    best_c: dict[str, Any] = {}
    for name in names:
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            continue
        c = counts(study)
        done += c.finished
        complete += c.complete
        failed += c.failed
        pruned += c.pruned
        running += c.running
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.value is None:
                continue
            if best_v is None or (t.value > best_v if maximize else t.value < best_v):
                best_v, best_c = t.value, dict(t.user_attrs.get("config") or t.params)
    elapsed = time.monotonic() - started
    new = done - done_at_start
    eta = None
    if new > 0 and total > done:
        eta = elapsed / new * (total - done)
    return Snapshot(total=total, done=done, complete=complete, failed=failed, pruned=pruned,
                    running=running, best_value=best_v, best_config=best_c, elapsed_s=elapsed,
                    eta_s=eta)


def render(s: Snapshot, title: str) -> Any:
    from rich.table import Table

    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    bar_w = 30
    frac = s.done / s.total if s.total else 0.0
    bar = "█" * int(bar_w * frac) + "░" * (bar_w - int(bar_w * frac))
    table.add_row(title, f"{bar} {s.done}/{s.total} done")
    table.add_row("trials", f"{s.running} running, {s.complete} ok, {s.failed} failed, {s.pruned} pruned")
    best = "-" if s.best_value is None else f"{s.best_value:.4f}  " + ", ".join(
        f"{k}={_fmt(v)}" for k, v in s.best_config.items())
    table.add_row("best", best)
    eta = "-" if s.eta_s is None else _dur(s.eta_s)
    table.add_row("time", f"elapsed {_dur(s.elapsed_s)}, ETA {eta}")
    return table


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _dur(sec: float) -> str:
    if not math.isfinite(sec):
        return "-"
    sec = int(sec)
    return f"{sec // 3600}h{sec // 60 % 60:02d}m" if sec >= 3600 else f"{sec // 60}m{sec % 60:02d}s"


class LiveDisplay:
    """Context manager: refresh a Rich Live view from the storage every ``interval`` seconds."""

    def __init__(self, console: Any, storage_url: str, names: Sequence[str], total: int, *,
                 title: str = "study", maximize: bool = True, interval: float = 1.0,
                 enabled: bool = True) -> None:
        self._console, self._url, self._names = console, storage_url, list(names)
        self._total, self._title, self._maximize = total, title, maximize
        self._interval, self._enabled = interval, enabled
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live: Any = None
        self.last: Snapshot | None = None

    def _poll(self, storage: Any, started: float, at_start: int) -> None:
        while True:
            try:
                self.last = snapshot(storage, self._names, self._total, started, at_start,
                                     self._maximize)
                self._live.update(render(self.last, self._title))
            except Exception:  # a busy SQLite file must never break the run it displays
                pass
            if self._stop.wait(self._interval):
                return

    def __enter__(self) -> LiveDisplay:
        if not self._enabled:
            return self
        from rich.live import Live

        from staytuned.search.storage import open_storage

        storage = open_storage(self._url)
        started = time.monotonic()
        first = snapshot(storage, self._names, self._total, started, 0, self._maximize)
        self._live = Live(render(first, self._title), console=self._console,
                          refresh_per_second=4, transient=False)
        self._live.__enter__()
        self._thread = threading.Thread(target=self._poll, args=(storage, started, first.done),
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            try:  # the final state, not the last poll's
                from staytuned.search.storage import open_storage

                last = snapshot(open_storage(self._url), self._names, self._total,
                                time.monotonic() - (self.last.elapsed_s if self.last else 0.0),
                                0, self._maximize)
                self.last = replace(last, eta_s=None)
                self._live.update(render(self.last, self._title))
            except Exception:
                pass
            self._live.__exit__(None, None, None)
