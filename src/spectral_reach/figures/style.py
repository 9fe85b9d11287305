"""The shared look of every figure."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402


def setup() -> None:
    sns.set_theme(context="paper", style="ticks", palette="viridis")


def save(fig: plt.Figure, pdf: str | Path, png: str | Path, dpi: int) -> None:
    """Write the figure as PDF and PNG, creating their folders."""
    for path in (pdf, png):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(pdf, bbox_inches="tight")
    fig.savefig(png, bbox_inches="tight", dpi=dpi)
    plt.close(fig)
