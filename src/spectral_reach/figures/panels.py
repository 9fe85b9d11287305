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


def seed_mean_lines(
    ax: plt.Axes, df: pd.DataFrame, x: str, y: str, hue: str, order: list, legend: bool = True, log: bool = True
) -> None:
    """One line per ``hue`` level through the seed means of ``y`` at each ``x`` (seaborn, its
    ``viridis`` colours in ``order``) and a band of one sd (ddof 1) around it. On a log axis the band
    is left out where ``mean - sd <= 0``: there it would run off the bottom of the axis."""
    sns.lineplot(df, x=x, y=y, hue=hue, hue_order=order, errorbar=None, ax=ax, palette="viridis", legend=legend)
    colors = dict(zip(order, sns.color_palette("viridis", len(order))))
    stats = df.groupby([hue, x])[y].agg(["mean", "std"]).reset_index()
    for level, g in stats.groupby(hue):
        low, high = g["mean"] - g["std"], g["mean"] + g["std"]
        ax.fill_between(g[x], low.where(low > 0) if log else low, high, color=colors[level], alpha=0.2, lw=0)


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
