"""Plotly figures of the report panels (interactive, in the HTML page).

Plotly renders titles, ticks and hover text as pseudo-HTML and decodes entities, so every piece
of user text (dataset, study, HP names and values) goes through :func:`esc` first: a dataset
called ``<script>`` shows as that text and never becomes markup.
"""

from __future__ import annotations

import html
import math
from typing import Any

from staytuned.report.panels import (
    CoveragePanel,
    HeatmapPanel,
    HistoryPanel,
    ImportancePanel,
    ParallelPanel,
    ParetoPanel,
)

METHOD_COLORS = {"cbs": "#1f77b4", "best-average": "#ff7f0e", "random": "#7f7f7f", "default": "#2ca02c",
                 "oracle": "#d62728"}

# Plotly draws its toolbar (the modebar) in the figure's top-right corner, over the top margin,
# less than MODEBAR_PX tall. Titles sit below that band, left-aligned on the plot area, so that
# the toolbar never covers their end whatever their length or the figure's width.
MODEBAR_PX = 34
TITLE_LINE_PX = 22  # one line of plotly_white's 17 px title font
TITLE_GAP_PX = 10  # between the title and what lies below it
PLOT_HEIGHT_PX = 330  # height of the plot area (figure height less margins)
BOTTOM_PX = 50


def layout(title: str, *, lines: int = 1, above_plot_px: int = 0,
           margin: dict[str, int] | None = None, **extra: Any) -> dict[str, Any]:
    """Layout of every report figure: ``title`` (``lines`` of it) under the toolbar.

    ``above_plot_px``: room the trace itself needs above its plot area (axis names).
    """
    top = MODEBAR_PX + lines * TITLE_LINE_PX + TITLE_GAP_PX + above_plot_px
    full_margin = {"l": 60, "r": 20, "t": top, "b": BOTTOM_PX, **(margin or {})}
    base = {
        "template": "plotly_white",
        "height": PLOT_HEIGHT_PX + full_margin["t"] + full_margin["b"],
        # Anchored by its bottom (plotly misplaces the top of a multi-line title), so the margin
        # above it is the toolbar's band.
        "title": {"text": title, "x": 0, "xref": "paper", "xanchor": "left", "y": 1,
                  "yref": "paper", "yanchor": "bottom", "pad": {"b": TITLE_GAP_PX + above_plot_px}},
    }
    return {**base, **extra, "margin": full_margin}


COLORBAR_GAP_PX = 60
COLORBAR_THICKNESS_PX = 14
PARALLEL_RIGHT_MARGIN_PX = 150


def _shorten(text: str, limit: int = 30) -> str:
    """``text`` cut in the middle to ``limit`` characters (a heatmap is ~520 px wide)."""
    if len(text) <= limit:
        return text
    keep = limit - 1
    return text[: keep - keep // 2] + "…" + text[len(text) - keep // 2:]


def esc(text: Any) -> str:
    # Plotly decodes &lt; &gt; &amp; but shows &quot; literally, so quotes stay as they are
    # (they cannot open a tag).
    return html.escape(str(text), quote=False)


def _go():
    import plotly.graph_objects as go

    return go


def _nan_none(values: list[float]) -> list[float | None]:
    return [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values]


def topk_figure(panel: CoveragePanel) -> Any:
    go = _go()
    fig = go.Figure()
    for name, curve in panel.curves.items():
        fig.add_trace(go.Scatter(x=panel.k, y=_nan_none(curve), mode="lines+markers", name=esc(name),
                                 line={"color": METHOD_COLORS.get(name), "dash": "dot" if name == "oracle" else None}))
    fig.update_layout(**layout(f"Best-of-top-k, {esc(panel.scheme)} ({esc(panel.label)})"),
                      xaxis_title="k (configs tried)", yaxis_title="mean best normalized score (1 = best)",
                      yaxis_range=[0, 1.05])
    return fig


def importance_figure(panel: ImportancePanel) -> Any:
    go = _go()
    items = sorted(panel.importances.items(), key=lambda kv: kv[1])
    fig = go.Figure(go.Bar(x=[v for _, v in items], y=[esc(k) for k, _ in items], orientation="h",
                           marker_color="#1f77b4"))
    # The target is named in the note under the figure; the title stays short enough for a
    # narrow window.
    fig.update_layout(**layout(f"HP importance (fANOVA), {panel.n_trials} runs"),
                      xaxis_title="importance (sums to 1)")
    fig.update_layout(height=max(160, 40 * len(items)) + fig.layout.margin.t + BOTTOM_PX)
    return fig


def heatmap_figure(panel: HeatmapPanel) -> Any:
    go = _go()
    text = [[f"n={c}" for c in row] for row in panel.counts]
    better = "higher" if panel.direction == "max" else "lower"
    fig = go.Figure(go.Heatmap(
        z=panel.z, x=[esc(x) for x in panel.x_labels], y=[esc(y) for y in panel.y_labels],
        colorscale="Viridis", reversescale=panel.direction == "min", text=text,
        hovertemplate="%{x}, %{y}: %{z:.4g} (%{text})<extra></extra>",
        colorbar={"title": {"text": f"score<br>({better} is<br>better)", "font": {"size": 12}}},
    ))
    # A heatmap is half a page wide: the title names the dataset (shortened if it must be), the
    # colour bar says which way is better.
    fig.update_layout(**layout(f"{esc(_shorten(panel.dataset))}: mean score"),
                      xaxis_title=esc(panel.x_name), yaxis_title=esc(panel.y_name),
                      xaxis_type="category", yaxis_type="category")
    return fig


def parallel_figure(panel: ParallelPanel) -> Any:
    go = _go()
    dims = []
    for d in panel.dimensions:
        dim: dict[str, Any] = {"label": esc(d["name"]), "values": _nan_none(d["values"])}
        if d["ticks"]:
            dim["tickvals"] = [v for v, _ in d["ticks"]]
            dim["ticktext"] = [esc(t) for _, t in d["ticks"]]
        dims.append(dim)
    # The last axis is the score, its tick labels and name reach right of the axis line: the
    # colour bar starts COLORBAR_GAP_PX further right, with its title along the bar (not above
    # it, where the axis name is), inside a right margin wide enough for bar, ticks and title.
    colorbar = {"title": {"text": esc(panel.color_name), "side": "right"},
                "x": 1, "xanchor": "left", "xpad": COLORBAR_GAP_PX,
                "thickness": COLORBAR_THICKNESS_PX}
    fig = go.Figure(go.Parcoords(line={"color": panel.color, "colorscale": "Viridis", "showscale": True,
                                       "colorbar": colorbar}, dimensions=dims))
    # Parallel axes carry their names and range labels above the plot area.
    fig.update_layout(**layout("Parallel coordinates (one line per successful run)", above_plot_px=40,
                               margin={"l": 70, "r": PARALLEL_RIGHT_MARGIN_PX, "b": 40}))
    return fig


def history_figure(panel: HistoryPanel) -> Any:
    go = _go()
    fig = go.Figure()
    for ds, s in panel.series.items():
        fig.add_trace(go.Scatter(x=s["number"], y=s["value"], mode="markers", name=f"{esc(ds)}: trial",
                                 marker={"size": 6, "opacity": 0.6}))
        fig.add_trace(go.Scatter(x=s["number"], y=s["best"], mode="lines", name=f"{esc(ds)}: best so far",
                                 line={"shape": "hv"}))
    fig.update_layout(**layout(f"Optimization history of study {esc(panel.study)}"),
                      xaxis_title="trial number",
                      yaxis_title=f"score ({'max' if panel.direction == 'max' else 'min'}imize)")
    return fig


def pareto_figure(panel: ParetoPanel) -> Any:
    go = _go()
    fig = go.Figure()
    for front in (False, True):
        pts = [p for p in panel.points if p["pareto"] == front]
        if not pts:
            continue
        fig.add_trace(go.Scatter(
            x=[p["x"] for p in pts], y=[p["y"] for p in pts], mode="markers",
            name="Pareto front" if front else "other trials",
            marker={"size": 10 if front else 6, "color": "#d62728" if front else "#9ecae1"},
            text=[esc(", ".join(f"{k}={v}" for k, v in p["params"].items())) for p in pts],
            customdata=[p["number"] for p in pts],
            hovertemplate="trial %{customdata}<br>%{text}<extra></extra>",
        ))
    xn, yn = (esc(n) for n in panel.names)
    fig.update_layout(**layout(f"Pareto front of study {esc(panel.study)}: {xn} vs {yn}"),
                      xaxis_title=f"{xn} ({panel.directions[0]}imize)",
                      yaxis_title=f"{yn} ({panel.directions[1]}imize)")
    return fig
