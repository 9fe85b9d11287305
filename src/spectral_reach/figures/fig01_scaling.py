"""Fig. 1: top, final train loss vs parameters with a fitted power law; bottom, chi_pos vs step.

One column per data set. chi_pos: mean over seeds with a band of one sd; single steps before
``raw_steps``, means over each measurement window after (App. C.1). Non-positive window means
cannot be drawn on log axes and are left out (the table keeps them).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ..analysis.claims import by_size, decreasing, dynamics, final
from ..analysis.lm import power_law
from . import style


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


def chi_pos_panel(ax: plt.Axes, windows: pd.DataFrame, order: list[str]) -> None:
    positive = windows[windows["chi_pos"] > 0]
    sns.lineplot(positive, x="step", y="chi_pos", hue="size", hue_order=order, errorbar="sd", ax=ax, palette="viridis")
    ax.set(xscale="symlog", yscale="log", xlabel="step", ylabel="χ_pos", xlim=(0, None))
    ax.legend(title="size", fontsize="x-small")


def plot(data: dict[str, tuple[pd.DataFrame, pd.DataFrame]], pdf: str, png: str, *, width: float, height: float,
         dpi: int) -> pd.DataFrame:
    """``data``: data set -> (runs, lnp windows). Returns the power-law fits."""
    style.setup()
    fig, axes = plt.subplots(2, len(data), figsize=(width, height), squeeze=False)
    fits = []
    for col, (name, (runs, windows)) in enumerate(data.items()):
        order = list(dict.fromkeys(runs.sort_values("params")["size"]))
        fit = scaling_panel(axes[0, col], runs, "final_train_loss", name)
        axes[0, col].set_ylabel("final train loss")
        fits.append({"dataset": name, "loss": "train", **fit})
        chi_pos_panel(axes[1, col], windows, order)
    fig.tight_layout()
    style.save(fig, pdf, png, dpi)
    return pd.DataFrame(fits)


def measured(data: dict[str, tuple[pd.DataFrame, pd.DataFrame]], fits: pd.DataFrame) -> dict:
    """Per data set: the fit, the final train loss per size and the chi_pos curve's verdicts."""
    out = []
    for name, (runs, windows) in data.items():
        loss = final(runs, "final_train_loss")
        fit = fits[fits["dataset"] == name].iloc[0].to_dict()
        out.append({**fit, "name": name, "sizes": list(by_size(runs).index), "loss": loss,
                    "loss_ordered": decreasing(loss), "chi_pos": dynamics(windows, runs, "chi_pos")})
    return {"datasets": out}
