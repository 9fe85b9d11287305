"""Panels that more than one figure draws."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from . import style


def positive_means(df: pd.DataFrame, column: str, by: list[str]) -> pd.DataFrame:
    """The rows of the ``by`` groups (a curve's points: size and step, or budget and size) whose
    mean over seeds of ``column`` is positive, every seed of them, non-positive seeds included:
    seaborn then draws exactly the seed means the tables and captions state. A point with a
    non-positive mean cannot sit on a log axis and is left out whole; dropping non-positive seeds
    first would draw the mean of the others instead."""
    return df[df.groupby(by)[column].transform("mean") > 0]


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
