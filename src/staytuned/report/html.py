"""One self-contained HTML page: inline CSS, inline plotly.js (from the installed plotly), no CDN.

Every piece of text that comes from data (dataset names, HP values, error messages, study
names) is HTML-escaped here or in :mod:`staytuned.report.figures`; figure JSON is embedded with
``<`` written as ``\\u003c`` so no string in it can close its ``<script>`` element.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Callable
from html import escape
from typing import Any

from staytuned.report import figures
from staytuned.report.panels import (
    CoveragePanel,
    FailedPanel,
    ImportancePanel,
    Panels,
    ParetoPanel,
    Skip,
)
from staytuned.report.runs import ReportInput
from staytuned.report.style import CSS

SECTIONS = (
    ("overview", "Overview"),
    ("coverage", "CBS coverage and best-of-top-k"),
    ("heatmaps", "Score heatmaps"),
    ("importance", "HP importance"),
    ("parallel", "Parallel coordinates"),
    ("history", "Optimization history"),
    ("pareto", "Pareto front"),
    ("failed", "Failed trials"),
)

_BOOT = """
(function () {
  var divs = document.querySelectorAll('div.plot');
  for (var i = 0; i < divs.length; i++) {
    var spec = JSON.parse(document.getElementById(divs[i].id + '-data').textContent);
    Plotly.newPlot(divs[i], spec.data, spec.layout, {responsive: true, displaylogo: false});
  }
})();
"""


class _Figures:
    """Collects figures as ``<div>`` + JSON pairs with unique ids."""

    def __init__(self) -> None:
        self.count = 0

    def div(self, fig: Any) -> str:
        self.count += 1
        pid = f"plot-{self.count}"
        payload = fig.to_json().replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        return (f'<div class="plot" id="{pid}"></div>\n'
                f'<script type="application/json" id="{pid}-data">{payload}</script>')


def _na(skip: Skip) -> str:
    return f'<p class="na">Not applicable: {escape(skip.reason)}</p>'


def _num(v: Any, fmt: str = ".4g") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return format(v, fmt) if isinstance(v, int | float) else escape(str(v))


def _hps(hps: dict[str, Any]) -> str:
    return ", ".join(f"{escape(str(k))}={escape(_short(v))}" for k, v in hps.items()) or "–"


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _table(headers: list[str], rows: list[list[str]], numeric: set[int] | frozenset[int] = frozenset()) -> str:
    """``rows`` hold already-escaped HTML; headers are escaped here."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(r))
        + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# --------------------------------------------------------------------------- sections
def _overview(inp: ReportInput) -> str:
    counts: dict[str, int] = {}
    for r in inp.runs:
        counts[r.status] = counts.get(r.status, 0) + 1
    items = [
        ("source", escape(inp.source)),
        ("kind", "Optuna storage" if inp.kind == "storage" else "results table"),
        ("runs", ", ".join(f"{n} {escape(s)}" for s, n in sorted(counts.items())) or "none"),
        ("datasets", f"{len(inp.datasets)}: " + ", ".join(escape(d) for d in inp.datasets)),
    ]
    html = "<table>" + "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in items) + "</table>"
    if inp.studies:
        rows = [[escape(s.name), escape(s.kind),
                 escape(", ".join(f"{n} ({d})" for n, d in zip(s.objective_names, s.directions, strict=False))),
                 str(s.n_trials), escape(", ".join(f"{k.lower()} {v}" for k, v in sorted(s.states.items())))]
                for s in inp.studies]
        html += "<h3>Studies</h3>" + _table(["study", "kind", "objectives", "trials", "states"], rows, {3})
    for note in inp.notes:
        html += f'<p class="note">{escape(note)}</p>'
    return html


def _coverage(panels: list[CoveragePanel] | Skip, figs: _Figures) -> str:
    if isinstance(panels, Skip):
        return _na(panels)
    out = []
    for p in panels:
        out.append(f"<h3>{escape(p.label)}: {len(p.datasets)} datasets, tolerance {p.tol:.0%}</h3>")
        rows = [[str(r["rank"]), escape(r["config_id"]), _hps(r["hps"]),
                 escape(", ".join(r["new_datasets"])) or "–", f"{r['covered']}/{len(p.datasets)}",
                 _num(r["mean_best_of_k"], ".3f")] for r in p.rows[:10]]
        out.append("<p class='note'>CBS ranking: each config is picked for the datasets it newly covers "
                   "(within the tolerance of the dataset's best score).</p>")
        out.append(_table(["rank", "config", "hyperparameters", "newly covers", "covered", "mean best-of-k"],
                          rows, {0, 4, 5}))
        if p.curves:
            out.append(figs.div(figures.topk_figure(p)))
            ks = [k for k in (1, 3, 5, 10) if k <= len(p.k)]
            rows = [[escape(m)] + [_num(c[k - 1], ".3f") for k in ks] for m, c in p.curves.items()]
            out.append(_table(["method"] + [f"k={k}" for k in ks], rows, set(range(1, len(ks) + 1))))
        else:
            out.append(_na(Skip("leave-one-out evaluation needs at least two datasets")))
        for note in p.notes:
            out.append(f'<p class="note">{escape(note)}</p>')
    return "\n".join(out)


def _list_of_figs(panels: Any, figs: _Figures, make: Callable[[Any], Any], grid: bool = True) -> str:
    if isinstance(panels, Skip):
        return _na(panels)
    divs = "\n".join(f"<div>{figs.div(make(p))}</div>" for p in panels)
    return f'<div class="grid">{divs}</div>' if grid else divs


def _importance(panel: ImportancePanel | Skip, figs: _Figures) -> str:
    if isinstance(panel, Skip):
        return _na(panel)
    rows = [[escape(k), f"{v:.3f}"] for k, v in panel.importances.items()]
    return (figs.div(figures.importance_figure(panel))
            + "<p class='note'>Optuna's fANOVA evaluator (optuna.importance.FanovaImportanceEvaluator, seed 0) "
            + (f"on a seeded sample of {panel.n_trials} of {panel.n_total} successful runs"
               if panel.n_total > panel.n_trials else f"on {panel.n_trials} successful runs")
            + f"; target: {escape(panel.target)}.</p>"
            + _table(["hyperparameter", "importance"], rows, {1}))


def _pareto(panels: list[ParetoPanel] | Skip, figs: _Figures) -> str:
    if isinstance(panels, Skip):
        return _na(panels)
    out = []
    for p in panels:
        out.append(figs.div(figures.pareto_figure(p)))
        front = sorted((q for q in p.points if q["pareto"]), key=lambda q: q["x"])
        rows = [[str(q["number"]), _num(q["x"]), _num(q["y"]), _hps(q["params"])] for q in front]
        out.append(_table(["trial", escape(p.names[0]), escape(p.names[1]), "parameters"], rows, {0, 1, 2}))
    return "\n".join(out)


def _failed(panel: FailedPanel | Skip) -> str:
    if isinstance(panel, Skip):
        return _na(panel)
    rows = []
    for r in panel.runs:
        err = escape((r.error or "(no error message stored)")[:2000])
        where = escape(r.study) + " #" + str(r.number) if r.study else f"row {r.number}"
        rows.append([where, escape(r.dataset), escape(r.status), _hps(r.params), f'<pre class="err">{err}</pre>'])
    more = f"<p class='note'>showing {len(panel.runs)} of {panel.total}</p>" if panel.total > len(panel.runs) else ""
    return f"<p>{panel.total} runs failed or were pruned.</p>" + _table(
        ["trial", "dataset", "status", "hyperparameters", "error"], rows) + more


def render_html(inp: ReportInput, panels: Panels, *, title: str = "staytuned report") -> str:
    """The whole page as one string."""
    try:
        from plotly.offline import get_plotlyjs
    except ImportError:
        from staytuned.errors import DependencyError

        raise DependencyError("plotly", "report", "The HTML report") from None

    from staytuned import __version__

    figs = _Figures()
    body = {
        "overview": _overview(inp),
        "coverage": _coverage(panels.coverage, figs),
        "heatmaps": (_list_of_figs(panels.heatmaps, figs, figures.heatmap_figure)
                     + ("" if isinstance(panels.heatmaps, Skip) else
                        "<p class='note'>Mean score per cell; continuous HPs are binned by quantiles.</p>")),
        "importance": _importance(panels.importance, figs),
        "parallel": _na(panels.parallel) if isinstance(panels.parallel, Skip)
        else figs.div(figures.parallel_figure(panels.parallel)),
        "history": _list_of_figs(panels.history, figs, figures.history_figure, grid=False),
        "pareto": _pareto(panels.pareto, figs),
        "failed": _failed(panels.failed),
    }
    nav = " ".join(f'<a href="#{sid}">{escape(name)}</a>' for sid, name in SECTIONS)
    sections = "\n".join(f'<section id="{sid}"><h2>{escape(name)}</h2>\n{body[sid]}\n</section>'
                         for sid, name in SECTIONS)
    when = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{escape(title)}</title><style>{CSS}</style>\n"
        f"<script>{get_plotlyjs()}</script>\n</head><body>\n"
        f"<header><h1>{escape(title)}</h1><p>{escape(inp.source)}</p>"
        f"<p>staytuned {escape(__version__)}, {when}</p></header>\n"
        f"<nav>{nav}</nav>\n<main>\n{sections}\n</main>\n"
        f"<script>{_BOOT}</script>\n</body></html>\n"
    )


def section_status(panels: Panels) -> dict[str, str]:
    """Section -> "shown" or "not applicable: <reason>" (for the CLI's JSON output)."""
    out = {"overview": "shown"}
    for name in ("coverage", "heatmaps", "importance", "parallel", "history", "pareto", "failed"):
        p = getattr(panels, name)
        out[name] = f"not applicable: {p.reason}" if isinstance(p, Skip) else "shown"
    return out


__all__ = ["SECTIONS", "render_html", "section_status"]
