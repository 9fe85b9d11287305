"""Figs. 10 and 11: chi_loss, chi_net, chi_pos and chi_net * chi_pos vs step for every size, one
row of panels per data set (App. D.4; the paper's Fig. 10 is SimpleStories, Fig. 11 CIFAR-5M):
mean over seeds with a band of one sd, window means as in Fig. 1; points whose seed mean is
non-positive are left out of the log axes (:func:`.panels.positive_means`). ``height`` is one
row's: the figure grows with the data sets, and each row's legend of sizes sits beside its data."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from ..analysis.claims import dynamics
from . import style
from .panels import positive_means, seed_mean_lines

PANELS = [("chi_loss", "χ_loss"), ("chi_net", "χ_net"), ("chi_pos", "χ_pos"), ("chi_net_pos", "χ_net · χ_pos")]

#: ``{data set: (its LNP windows, its runs)}``
Data = dict[str, tuple[pd.DataFrame, pd.DataFrame]]


def plot(data: Data, pdf: str, png: str, *, width: float, height: float, dpi: int) -> None:
    style.setup()
    fig, grid = plt.subplots(len(data), len(PANELS), figsize=(width, height * len(data)), squeeze=False)
    for axes, (name, (windows, runs)) in zip(grid, data.items()):
        order = list(dict.fromkeys(runs.sort_values("params")["size"]))
        for ax, (col, label) in zip(axes, PANELS):
            means = positive_means(windows, col, ["size", "step"])
            seed_mean_lines(ax, means, "step", col, "size", order, ax is axes[-1])
            ax.set(xscale="symlog", yscale="log", xlabel="step", ylabel=label, xlim=(0, None))
            style.tidy_log_axes(ax)
        axes[0].set_title(name, loc="left", fontweight="bold")
        sns.move_legend(axes[-1], "upper left", bbox_to_anchor=(1.02, 1.0), fontsize="x-small")  # beside the data
    fig.tight_layout()
    style.save(fig, pdf, png, dpi)


def caption_values(data: Data) -> dict:
    """Per data set, every component's curve per size with its verdicts."""
    return {
        "datasets": [
            {"title": name, **{col: dynamics(windows, runs, col) for col, _ in PANELS}}
            for name, (windows, runs) in data.items()
        ]
    }
