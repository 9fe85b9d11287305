"""Fig. 7: final test loss vs parameters per data set, with a fitted power law (App. D.1)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from . import style
from .fig01_scaling import scaling_panel


def plot(data: dict[str, pd.DataFrame], pdf: str, png: str, *, width: float, height: float, dpi: int) -> pd.DataFrame:
    """``data``: data set -> runs table. Returns the fits."""
    style.setup()
    fig, axes = plt.subplots(1, len(data), figsize=(width, height), squeeze=False)
    fits = []
    for ax, (name, runs) in zip(axes[0], data.items()):
        fits.append({"dataset": name, "loss": "test", **scaling_panel(ax, runs, "final_test_loss", name)})
        ax.set_ylabel("final test loss")
    fig.tight_layout()
    style.save(fig, pdf, png, dpi)
    return pd.DataFrame(fits)
