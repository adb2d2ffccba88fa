"""Static PNGs of the report panels (matplotlib, for slides and papers).

Uses ``matplotlib.figure.Figure`` directly, never pyplot: no global figure state, no display.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from staytuned.report.figures import METHOD_COLORS
from staytuned.report.panels import (
    CoveragePanel,
    HeatmapPanel,
    HistoryPanel,
    ImportancePanel,
    Panels,
    ParallelPanel,
    ParetoPanel,
)

DPI = 150


def slug(text: str) -> str:
    """A file-name-safe form of user text (dataset and study names can hold anything)."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._")
    return s[:60] or "x"


def _figure(width: float = 7, height: float = 4.2) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    return path


def topk_png(panel: CoveragePanel, path: Path) -> Path:
    fig = _figure()
    ax = fig.add_subplot()
    for name, curve in panel.curves.items():
        ax.plot(panel.k, curve, marker="o", ms=3, label=name, color=METHOD_COLORS.get(name),
                linestyle=":" if name == "oracle" else "-")
    ax.set(xlabel="k (configs tried)", ylabel="mean best normalized score", ylim=(0, 1.05),
           title=f"Best-of-top-k ({panel.label})")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def importance_png(panel: ImportancePanel, path: Path) -> Path:
    items = sorted(panel.importances.items(), key=lambda kv: kv[1])
    fig = _figure(6, max(2.2, 0.4 * len(items) + 1.2))
    ax = fig.add_subplot()
    ax.barh([k for k, _ in items], [v for _, v in items], color="#1f77b4")
    ax.set(xlabel="importance (fANOVA, sums to 1)", title=f"HP importance ({panel.n_trials} runs)")
    return _save(fig, path)


def heatmap_png(panel: HeatmapPanel, path: Path) -> Path:
    z = np.array([[math.nan if v is None else v for v in row] for row in panel.z], dtype=float)
    fig = _figure(1.2 + 0.9 * len(panel.x_labels), 1.5 + 0.5 * len(panel.y_labels))
    ax = fig.add_subplot()
    im = ax.imshow(z, cmap="viridis_r" if panel.direction == "min" else "viridis", aspect="auto", origin="lower")
    ax.set_xticks(range(len(panel.x_labels)), panel.x_labels, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(panel.y_labels)), panel.y_labels, fontsize=8)
    lo, hi = np.nanmin(z), np.nanmax(z)
    for (a, b), v in np.ndenumerate(z):
        if not math.isnan(v):
            bright = hi > lo and ((v - lo) / (hi - lo) > 0.6) != (panel.direction == "min")
            ax.text(b, a, f"{v:.3g}", ha="center", va="center", fontsize=7, color="black" if bright else "white")
    ax.set(xlabel=panel.x_name, ylabel=panel.y_name, title=f"{panel.dataset}: mean score")
    fig.colorbar(im, ax=ax)
    return _save(fig, path)


def parallel_png(panel: ParallelPanel, path: Path) -> Path:
    """Each axis scaled to [0, 1]; lines coloured by score (like plotly's parcoords)."""
    from matplotlib import colormaps

    dims = panel.dimensions
    fig = _figure(max(6, 1.3 * len(dims)), 4.2)
    ax = fig.add_subplot()
    cols = []
    for x, d in enumerate(dims):
        v = np.array(d["values"], dtype=float)
        lo, hi = np.nanmin(v), np.nanmax(v)
        cols.append((v - lo) / (hi - lo) if hi > lo else np.full_like(v, 0.5))
        # axis labels: the categories, or the range of a numeric axis
        ticks = d["ticks"] or [(lo, f"{lo:.3g}"), (hi, f"{hi:.3g}")]
        for value, label in ticks:
            pos = (value - lo) / (hi - lo) if hi > lo else 0.5
            ax.text(x + 0.03, pos, str(label)[:28], fontsize=6, va="center", ha="left", zorder=5,
                    bbox={"facecolor": "white", "alpha": 0.7, "pad": 0.5, "lw": 0})
    data = np.vstack(cols)  # dims x runs
    c = np.array(panel.color, dtype=float)
    cn = (c - np.nanmin(c)) / (np.nanmax(c) - np.nanmin(c)) if np.nanmax(c) > np.nanmin(c) else np.full_like(c, 0.5)
    cmap = colormaps["viridis"]
    for j in np.argsort(cn):  # best runs drawn last, on top
        ax.plot(range(len(dims)), data[:, j], color=cmap(cn[j]), alpha=0.6, lw=1)
    ax.set_xticks(range(len(dims)), [d["name"] for d in dims], rotation=20, ha="right", fontsize=8)
    ax.set_yticks([])
    for x in range(len(dims)):
        ax.axvline(x, color="black", lw=0.5)
    ax.set(title=f"Parallel coordinates (colour: {panel.color_name})")
    return _save(fig, path)


def history_png(panel: HistoryPanel, path: Path) -> Path:
    fig = _figure()
    ax = fig.add_subplot()
    for ds, s in panel.series.items():
        line = ax.step(s["number"], s["best"], where="post", label=f"{ds}: best")
        ax.scatter(s["number"], s["value"], s=10, alpha=0.5, color=line[0].get_color())
    ax.set(xlabel="trial number", ylabel="score", title=f"Optimization history: {panel.study}")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def pareto_png(panel: ParetoPanel, path: Path) -> Path:
    fig = _figure()
    ax = fig.add_subplot()
    other = [p for p in panel.points if not p["pareto"]]
    front = sorted((p for p in panel.points if p["pareto"]), key=lambda p: p["x"])
    ax.scatter([p["x"] for p in other], [p["y"] for p in other], s=12, color="#9ecae1", label="other trials")
    ax.plot([p["x"] for p in front], [p["y"] for p in front], "o-", color="#d62728", ms=5, label="Pareto front")
    ax.set(xlabel=f"{panel.names[0]} ({panel.directions[0]})", ylabel=f"{panel.names[1]} ({panel.directions[1]})",
           title=f"Pareto front: {panel.study} ({panel.names[0]} vs {panel.names[1]})")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


class _Names:
    """Distinct file names: two datasets may slug alike ('a b' and 'a_b')."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.used: set[str] = set()

    def __truediv__(self, name: str) -> Path:
        stem, n = name[:-4], 1
        while name in self.used:
            n += 1
            name = f"{stem}_{n}.png"
        self.used.add(name)
        return self.out / name


def write_pngs(panels: Panels, out_dir: str | Path) -> list[Path]:
    """One PNG per plot of the report; returns the paths written."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    out = _Names(Path(out_dir))
    written: list[Path] = []
    if isinstance(panels.coverage, list):
        for i, p in enumerate(panels.coverage):
            if p.curves:
                written.append(topk_png(p, out / f"best_of_top_k_{i + 1}_{slug(p.label)}.png"))
    if isinstance(panels.importance, ImportancePanel):
        written.append(importance_png(panels.importance, out / "hp_importance.png"))
    if isinstance(panels.heatmaps, list):
        for hm in panels.heatmaps:
            written.append(heatmap_png(hm, out / f"heatmap_{slug(hm.dataset)}.png"))
    if isinstance(panels.parallel, ParallelPanel):
        written.append(parallel_png(panels.parallel, out / "parallel_coordinates.png"))
    if isinstance(panels.history, list):
        for h in panels.history:
            written.append(history_png(h, out / f"history_{slug(h.study)}.png"))
    if isinstance(panels.pareto, list):
        for pf in panels.pareto:
            written.append(pareto_png(pf, out / f"pareto_{slug(pf.study)}_{slug(pf.names[1])}.png"))
    return written
