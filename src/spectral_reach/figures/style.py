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


def save(fig: plt.Figure, pdf: str | Path, png: str | Path, dpi: int) -> None:
    """Write the figure as PDF and PNG, creating their folders."""
    for path in (pdf, png):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(pdf, bbox_inches="tight")
    fig.savefig(png, bbox_inches="tight", dpi=dpi)
    plt.close(fig)


def readable_log_ticks(axis: matplotlib.axis.Axis, low: float, high: float) -> None:
    """On a log axis spanning less than two decades, label 1-2-5 steps in engineering notation
    (``20k``) and leave the minor ticks unlabelled: matplotlib's defaults label every minor tick
    there (``2x10^4 3x10^4 4x10^4``), and the labels overlap."""
    if low <= 0 or np.log10(high / low) >= 2:
        return
    axis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ticker.EngFormatter(sep=""))
    axis.set_minor_formatter(ticker.NullFormatter())
