"""The report's figures as inline SVG text, drawn with matplotlib's own canvas (no display, no pyplot).

    progress_svg(runs)               best-so-far (line) and batch-mean reward (dots) against trainings
    updates_svg(runs)                each controller metric over its updates, one small panel per metric
    curves_svg(title, curves, ...)   learning curves of a rule next to the baselines'
    formula_svg(latex)               a rule's LaTeX rendered by matplotlib's mathtext; None if it cannot

Text stays text (``svg.fonttype: none``: smaller, and matplotlib escapes it as XML, so a label cannot
inject markup), and each figure's ids get their own salt so that several SVGs in one page never share an
id. Non-finite points (a diverged training) are gaps.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Mapping, Sequence

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from search.cli.report_data import RunData

_SALT = itertools.count()
# Not controller metrics to plot: counters and the batch index itself.
_NOT_METRICS = {"batch", "update", "samples", "staleness"}


def to_svg(figure: Figure, fonttype: str = "none") -> str:
    """The figure as an <svg> element (no XML header or doctype), ready to inline in HTML."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": fonttype, "svg.hashsalt": f"nos{next(_SALT)}"}):
        FigureCanvasSVG(figure).print_svg(buffer)
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def _finite(values: Sequence[float | None]) -> list[float]:
    return [v if v is not None and math.isfinite(v) else math.nan for v in values]


def progress_svg(runs: Sequence[RunData]) -> str:
    figure = Figure(figsize=(8, 3.6), layout="constrained")
    ax = figure.subplots()
    for index, run in enumerate(runs):
        color, p = f"C{index % 10}", run.progress
        ax.plot(p.trainings, _finite(p.best_so_far), color=color, label=f"{run.label}: best so far")
        ax.plot(p.batch_end, p.batch_mean, "o", color=color, markersize=3, alpha=0.6,
                label=f"{run.label}: batch mean")
    ax.set_xlabel("trainings")
    ax.set_ylabel("reward")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return to_svg(figure)


def updates_svg(runs: Sequence[RunData]) -> str | None:
    """None when no run has recorded a controller update."""
    metrics: list[str] = []
    for run in runs:
        for stats in run.updates:
            metrics += [k for k, v in stats.items() if k not in _NOT_METRICS and k not in metrics
                        and isinstance(v, int | float) and not isinstance(v, bool)]
    if not metrics:
        return None
    columns = min(3, len(metrics))
    rows = math.ceil(len(metrics) / columns)
    figure = Figure(figsize=(3.2 * columns, 2.3 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, metric in zip(axes, metrics, strict=False):
        for index, run in enumerate(runs):
            points = [(s["batch"], s[metric]) for s in run.updates if isinstance(s.get(metric), int | float)]
            if points:
                ax.plot(*zip(*points, strict=True), color=f"C{index % 10}", marker=".", markersize=3,
                        label=run.label)
        ax.set_title(metric, fontsize="medium")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    axes[0].legend(fontsize="x-small")
    figure.supxlabel("controller update (batch)", fontsize="small")
    return to_svg(figure)


def curves_svg(title: str, curves: Mapping[str, Sequence[float | None]],
               baselines: Mapping[str, Sequence[float | None]], *, ylabel: str = "validation metric",
               references: Mapping[str, float] | None = None) -> str:
    """The rule's curves (solid, with dots) and the baselines' (dashed), against the epoch; each reference
    (a baseline's final value where its curve is unknown) as a dotted horizontal line."""
    figure = Figure(figsize=(5.6, 3.0), layout="constrained")
    ax = figure.subplots()
    for label, values in curves.items():
        ax.plot(range(1, len(values) + 1), _finite(values), marker="o", markersize=3, label=label)
    for index, (label, values) in enumerate(baselines.items()):
        ax.plot(range(1, len(values) + 1), _finite(values), linestyle="--", linewidth=1,
                color=f"C{(len(curves) + index) % 10}", label=label)
    for index, (label, value) in enumerate((references or {}).items()):
        if math.isfinite(value):
            ax.axhline(value, linestyle=":", linewidth=1, color=f"C{(len(curves) + index) % 10}", label=label)
    ax.set_title(title, fontsize="medium")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="x-small")
    return to_svg(figure)


def formula_svg(latex: str | None) -> str | None:
    """The LaTeX drawn by mathtext (a subset of TeX, offline: no MathJax) with the glyphs as paths, so it
    looks the same in every browser; None when mathtext cannot parse it (the page then shows the text)."""
    if not latex:
        return None
    figure = Figure(figsize=(0.01, 0.01))
    FigureCanvasAgg(figure)  # mathtext measures the text with Agg before the SVG is written
    figure.text(0, 0, f"${latex}$", fontsize=13)
    try:
        buffer = io.StringIO()
        with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": f"nos{next(_SALT)}"}):
            figure.savefig(buffer, format="svg", bbox_inches="tight", pad_inches=0.03, transparent=True)
    except ValueError:  # mathtext's ParseException is a ValueError: TeX it does not know
        return None
    text = buffer.getvalue()
    return text[text.index("<svg"):]
