"""HTML report (one self-contained, offline file) and PNG plots of studies or results tables.

>>> result = write_report("runs/study.db", "report.html", png_dir="figs")   # doctest: +SKIP

Pipeline: :mod:`runs` (read) -> :mod:`panels` (compute) -> :mod:`figures`/:mod:`html` (page) and
:mod:`png` (static images).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from staytuned._util.io import atomic_write_text

__all__ = ["REPORT_STEPS", "ReportResult", "load_input", "write_report"]

#: ``on_step`` calls of :func:`write_report` without PNGs (one more with ``png_dir``), for progress bars.
REPORT_STEPS = 7


@dataclass(frozen=True)
class ReportResult:
    """What :func:`write_report` wrote."""

    html: Path
    pngs: list[Path]
    sections: dict[str, str]
    n_runs: int
    datasets: list[str]
    studies: list[str]
    bytes: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"html": str(self.html), "pngs": [str(p) for p in self.pngs], "sections": self.sections,
                "n_runs": self.n_runs, "datasets": self.datasets, "studies": self.studies,
                "bytes": self.bytes, "notes": self.notes}


def load_input(source: str, study: str | None = None, columns: Any = None, direction: str | None = None) -> Any:
    """A results table (by file suffix) or an Optuna storage (URL or ``.db`` file)."""
    from staytuned.errors import InputError
    from staytuned.report.runs import from_storage, from_table, is_table_path

    if is_table_path(source):
        if study is not None:
            raise InputError("applies to a storage, not to a results table", field="study", value=study)
        return from_table(source, columns, direction)
    if columns is not None or direction is not None:
        raise InputError("`columns` and `direction` apply to a results table, not to a storage",
                         field="source", value=source)
    return from_storage(source, study)


def write_report(
    source: str,
    out: str | Path,
    *,
    study: str | None = None,
    png_dir: str | Path | None = None,
    tol: float = 0.01,
    k: int = 10,
    title: str | None = None,
    columns: Any = None,
    direction: str | None = None,
    on_step: Callable[[str], None] | None = None,
) -> ReportResult:
    """Read ``source``, compute every section, write the HTML page (atomically) and the PNGs."""
    from staytuned.report.html import render_html, section_status
    from staytuned.report.panels import build_panels
    from staytuned.report.png import write_pngs

    step = on_step or (lambda name: None)
    step("reading runs")
    inp = load_input(source, study, columns, direction)
    panels = build_panels(inp, tol=tol, k=k, on_step=step)
    step("writing HTML")
    text = render_html(inp, panels, title=title or f"staytuned report: {Path(str(source)).name}")
    path = atomic_write_text(out, text)
    pngs: list[Path] = []
    if png_dir is not None:
        step("writing PNGs")
        pngs = write_pngs(panels, png_dir)
    return ReportResult(html=path, pngs=pngs, sections=section_status(panels), n_runs=len(inp.runs),
                        datasets=inp.datasets, studies=[s.name for s in inp.studies],
                        bytes=len(text.encode("utf-8")), notes=list(inp.notes))
