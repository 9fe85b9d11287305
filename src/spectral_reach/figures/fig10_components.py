"""Figs. 10 and 11: chi_loss, chi_net, chi_pos and chi_net * chi_pos vs step for every size of
one data set (App. D.4): mean over seeds with a band of one sd, window means as in Fig. 1; points
whose seed mean is non-positive are left out of the log axes (:func:`.panels.positive_means`)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from ..analysis.claims import dynamics
from . import style
from .panels import positive_means, seed_mean_lines

PANELS = [("chi_loss", "χ_loss"), ("chi_net", "χ_net"), ("chi_pos", "χ_pos"), ("chi_net_pos", "χ_net · χ_pos")]


def plot(
    windows: pd.DataFrame, runs: pd.DataFrame, title: str, pdf: str, png: str, *, width: float, height: float, dpi: int
) -> None:
    style.setup()
    order = list(dict.fromkeys(runs.sort_values("params")["size"]))
    fig, axes = plt.subplots(1, len(PANELS), figsize=(width, height))
    for ax, (col, label) in zip(axes, PANELS):
        seed_mean_lines(ax, positive_means(windows, col, ["size", "step"]), "step", col, "size", order, ax is axes[-1])
        ax.set(xscale="symlog", yscale="log", xlabel="step", ylabel=label, xlim=(0, None))
        style.tidy_log_axes(ax)
    sns.move_legend(axes[-1], "upper left", bbox_to_anchor=(1.02, 1.0), fontsize="x-small")  # beside the data
    fig.suptitle(title)
    fig.tight_layout()
    style.save(fig, pdf, png, dpi)


def caption_values(windows: pd.DataFrame, runs: pd.DataFrame, title: str) -> dict:
    """Every component's curve per size with its verdicts."""
    return {"title": title, **{col: dynamics(windows, runs, col) for col, _ in PANELS}}
