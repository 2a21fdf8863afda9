"""Learning-curve plots as PNG files, drawn with matplotlib's Agg canvas (no display, no pyplot state).

    plot_curves("nos_ab12cd_1_curves.png", {"seed 1": [80.1, 90.3], "seed 2": [79.5, 91.0]},
                title="nos_ab12cd_1 on digits", ylabel="val accuracy", references={"adam": 91.2},
                lower={"seed 1": [1.2, 0.4]}, lower_label="train loss")

The upper panel holds the curves (one line per series, against the epoch) with each reference (a
baseline's mean final value) as a dashed horizontal line; an optional lower panel holds another set of
curves, e.g. the training loss. Non-finite points (a diverged run) are left as gaps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def _points(values: Sequence[float | None]) -> tuple[list[int], list[float]]:
    epochs = list(range(1, len(values) + 1))
    return epochs, [v if v is not None and math.isfinite(v) else math.nan for v in values]


def plot_curves(path: str | Path, curves: Mapping[str, Sequence[float | None]], *, title: str, ylabel: str,
                references: Mapping[str, float] | None = None,
                lower: Mapping[str, Sequence[float | None]] | None = None,
                lower_label: str = "train loss") -> Path:
    """Write the plot (see the module docstring) to ``path`` as a PNG; returns the path."""
    path = Path(path)
    panels = 2 if lower else 1
    figure = Figure(figsize=(7, 3.2 * panels), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
    for label, values in curves.items():
        axes[0].plot(*_points(values), marker="o", markersize=3, label=label)
    for index, (label, value) in enumerate((references or {}).items()):
        if value is not None and math.isfinite(value):
            axes[0].axhline(value, linestyle="--", linewidth=1, color=f"C{(len(curves) + index) % 10}",
                            label=f"{label} (final)")
    axes[0].set_ylabel(ylabel)
    axes[0].set_title(title)
    if lower:
        for label, values in lower.items():
            axes[1].plot(*_points(values), marker="o", markersize=3, label=label)
        axes[1].set_ylabel(lower_label)
    axes[-1].set_xlabel("epoch")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=100)
    return path
