"""Progress of long commands off a terminal: one timestamped line per event, never silence."""

from __future__ import annotations

import io
import re

from rich.console import Console

from staytuned.cli._progress import StepProgress

LINE = re.compile(r"^\[\d\d:\d\d:\d\d\] ")


def _console(terminal: bool) -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=terminal, width=100), buf


def test_lines_off_a_terminal_throttled_with_eta_and_an_end_line() -> None:
    console, buf = _console(terminal=False)
    now = [0.0]
    with StepProgress(console, interval=10.0, clock=lambda: now[0]) as p:
        p.update("simulating", 0, 40)
        for done in range(1, 41):
            now[0] += 1.0  # one step a second: a count line every 10 s, and the end
            p.update("simulating", done, 40)
    lines = buf.getvalue().splitlines()
    assert all(LINE.match(x) for x in lines), lines
    assert lines[0].endswith("simulating: 0/40 (0%)")
    assert lines[1].endswith("simulating: 10/40 (25%), ETA 30s")
    assert lines[-1].endswith("simulating: 40/40 (100%), done in 40s")
    assert len(lines) == 5  # start, 10, 20, 30, 40


def test_a_new_detail_or_phase_is_a_line_of_its_own() -> None:
    console, buf = _console(terminal=False)
    with StepProgress(console, clock=lambda: 0.0) as p:
        p.update("report", 0, 3, detail="coverage")
        p.update("report", 1, 3, detail="heatmaps")
        p.update("report", 1, 3, detail="heatmaps")  # nothing new: no line
        p.update("training (steps)", 1, 13)
        p.update("evaluating (rows)", 50, 100)
    text = [x.split("] ", 1)[1] for x in buf.getvalue().splitlines()]
    assert text == ["report: coverage: 0/3 (0%)", "report: heatmaps: 1/3 (33%)",
                    "training (steps): 1/13 (8%)", "evaluating (rows): 50/100 (50%)"]


def test_quiet_prints_nothing_and_a_terminal_gets_a_bar_not_lines() -> None:
    console, buf = _console(terminal=False)
    with StepProgress(console, quiet=True) as p:
        p.update("x", 1, 2)
    assert buf.getvalue() == ""
    console, buf = _console(terminal=True)
    with StepProgress(console, transient=False) as p:
        p.update("simulating", 2, 4)
    assert "simulating" in buf.getvalue() and not LINE.search(buf.getvalue())
