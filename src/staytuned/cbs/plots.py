"""Plots of CBS evaluations. matplotlib is imported lazily with the headless Agg backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from staytuned._util.io import atomic_path
from staytuned.cbs.evaluation import Evaluation
from staytuned.errors import InputError

_STYLE: dict[str, dict[str, Any]] = {
    "cbs": {"color": "#1f77b4", "marker": "o", "linewidth": 2.2},
    "zeroshot": {"color": "#9467bd", "marker": "D", "markersize": 4},
    "greedy-portfolio": {"color": "#8c564b", "marker": "v"},
    "best-average": {"color": "#ff7f0e", "marker": "s"},
    "random": {"color": "#7f7f7f", "marker": ".", "linestyle": "--"},
    "default": {"color": "#2ca02c", "marker": "^", "linestyle": ":"},
    "oracle": {"color": "#000000", "linestyle": "-.", "linewidth": 1.0},
}


def plot_evaluation(evaluation: Evaluation, path: str | Path, title: str | None = None) -> Path:
    """Best-of-top-k normalized score and solved fraction against k, per method; PNG or SVG."""
    p = Path(path)
    fmt = p.suffix.lower().lstrip(".")
    if fmt not in ("png", "svg"):
        raise InputError("unsupported plot format", field="plot", value=str(path), expected="a .png or .svg path")
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    try:
        for name, curve in evaluation.methods.items():
            style = _STYLE.get(name, {})
            axes[0].plot(evaluation.k, curve.mean_best_of_k, label=name, **style)
            axes[1].plot(evaluation.k, curve.solved_fraction, label=name, **style)
        auto = " (CBS: tol auto per fold)" if evaluation.tol_per_fold is not None else ""
        axes[0].set_ylabel("mean best-of-top-k normalized score" + auto)
        axes[1].set_ylabel(f"fraction solved (within {evaluation.tol * 100:g}% of best)"
                           if evaluation.abs_tol is None else f"fraction solved (within {evaluation.abs_tol:g})")
        for ax in axes:
            ax.set_xlabel("k (configs tried)")
            ax.set_xticks(evaluation.k if len(evaluation.k) <= 20 else evaluation.k[:: max(1, len(evaluation.k) // 10)])
            ax.set_ylim(0, 1.05)
            ax.grid(alpha=0.3)
        axes[0].legend(loc="lower right")
        fig.suptitle(title or f"CBS, {evaluation.scheme}")
        with atomic_path(p) as tmp:
            fig.savefig(tmp, format=fmt, dpi=120)
    finally:
        plt.close(fig)
    return p
