"""The shared look of every figure."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib import ticker  # noqa: E402


def setup() -> None:
    sns.set_theme(context="paper", style="ticks", palette="viridis")


def per_dataset(size: float, n: int) -> float:
    """A figure's width (or height) for ``n`` data sets, one column (or row) each: the config's
    ``size`` holds two, and each further data set adds half of it, so panels keep their size."""
    return size * max(n, 2) / 2


def save(fig: plt.Figure, pdf: str | Path, png: str | Path, dpi: int) -> None:
    """Write the figure as PDF and PNG, creating their folders."""
    for path in (pdf, png):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(pdf, bbox_inches="tight")
    fig.savefig(png, bbox_inches="tight", dpi=dpi)
    plt.close(fig)


def readable_log_ticks(axis: matplotlib.axis.Axis, low: float, high: float, plain: bool = False) -> None:
    """On a log axis spanning less than two decades, label a few ticks in engineering notation
    (``20k``; 1-2-5 steps, or three to five plain steps within one decade) and leave the minor ticks
    unlabelled: matplotlib's defaults label every minor tick there (``2x10^4 3x10^4 4x10^4``),
    and the labels overlap. ``plain``: ``%g`` labels (ratios near 1) instead of engineering ones."""
    if low <= 0 or np.log10(high / low) >= 2:
        return
    if np.log10(high / low) < 1:  # within a decade a log locator finds too few ticks: about four plain ones
        axis.set_major_locator(ticker.MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10], min_n_ticks=3))
    else:
        axis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ticker.FormatStrFormatter("%g") if plain else ticker.EngFormatter(sep=""))
    axis.set_minor_formatter(ticker.NullFormatter())


def tidy_log_axes(ax: plt.Axes) -> None:
    """:func:`readable_log_ticks` on each log axis of ``ax`` within its current limits: engineering
    labels on x (parameter counts), ``%g`` on y (losses, ratios, components)."""
    if ax.get_xscale() == "log":
        readable_log_ticks(ax.xaxis, *ax.get_xlim())
    if ax.get_yscale() == "log":
        readable_log_ticks(ax.yaxis, *ax.get_ylim(), plain=True)
