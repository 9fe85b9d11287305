"""Panels that more than one figure draws."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from . import style


def scaling_panel(ax: plt.Axes, runs: pd.DataFrame, column: str, title: str, fit: dict) -> None:
    """Loss of every run vs parameters with the fitted ``E + A N^-alpha`` (``fit``: a row of
    :func:`..analysis.lm.loss_fits`). A fit that does not determine its parameters is not drawn:
    the panel says "no power-law fit" and why."""
    sns.scatterplot(runs, x="params", y=column, hue="size", ax=ax, legend=False, palette="viridis")
    if fit["determined"]:
        n = np.geomspace(runs["params"].min() * 0.8, runs["params"].max() * 1.25, 100)
        label = f"E + A N^-α: α = {fit['alpha']:.3g} ± {fit['alpha_err']:.2g}, E = {fit['E']:.3g} ± {fit['E_err']:.2g}"
        ax.plot(n, fit["E"] + fit["A"] * n ** -fit["alpha"], "k--", lw=1, label=label)
        ax.legend(fontsize="x-small")
    else:
        ax.text(0.03, 0.04, f"no power-law fit: {fit['reason']}", transform=ax.transAxes, fontsize="x-small")
    ax.set(xscale="log", yscale="log", xlabel="parameters N", title=title)
    style.tidy_log_axes(ax)
