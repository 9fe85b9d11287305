"""Panels that more than one figure draws."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ..analysis.lm import power_law


def scaling_panel(ax: plt.Axes, runs: pd.DataFrame, column: str, title: str) -> dict[str, float]:
    """Loss of every run vs parameters, with the fitted ``E + A N^-alpha``; returns the fit."""
    fit = power_law(runs["params"].to_numpy(), runs[column].to_numpy())
    sns.scatterplot(runs, x="params", y=column, hue="size", ax=ax, legend=False, palette="viridis")
    n = np.geomspace(runs["params"].min() * 0.8, runs["params"].max() * 1.25, 100)
    ax.plot(n, fit["E"] + fit["A"] * n ** -fit["alpha"], "k--", lw=1,
            label=f"E + A N^-α: α = {fit['alpha']:.3g} ± {fit['alpha_err']:.2g}, E = {fit['E']:.3g} ± {fit['E_err']:.2g}")
    ax.set(xscale="log", yscale="log", xlabel="parameters N", title=title)
    ax.legend(fontsize="x-small")
    return fit
