"""Fig. 8: isocompute curves (App. D.2): test loss and chi_pos vs model size at fixed budgets
``C = 6 N D`` (N all parameters, D training tokens), one row per data set, one line per budget."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from . import style
from .panels import positive_means, seed_mean_lines


def plot(
    data: dict[str, tuple[pd.DataFrame, pd.DataFrame]], pdf: str, png: str, *, width: float, height: float, dpi: int
) -> None:
    """``data``: data set -> (isocompute test loss, isocompute chi_pos) tables of :func:`analysis.lm.isocompute`."""
    style.setup()
    fig, axes = plt.subplots(len(data), 2, figsize=(width, style.per_dataset(height, len(data))), squeeze=False)
    for row, (name, (loss, pos)) in enumerate(data.items()):
        budgets = [f"{c:.2g}" for c in sorted(loss["budget"].unique())]  # one colour per budget in both panels
        for ax, df, col, label in (
            (axes[row, 0], loss, "test_loss", "test loss"),
            (axes[row, 1], pos, "chi_pos", "χ_pos"),
        ):
            df = df.assign(C=df["budget"].map(lambda c: f"{c:.2g}"))
            if col == "chi_pos":  # log axis: points whose seed mean is non-positive are left out
                df = positive_means(df, col, ["budget", "params"])
            seed_mean_lines(ax, df, "params", col, "C", budgets, legend=col == "chi_pos")
            ax.set(xscale="log", yscale="log", xlabel="parameters N", ylabel=label, title=f"{name}: {label} at C = 6ND")
            style.tidy_log_axes(ax)
        # one legend per row, beside its right panel: inside, at the paper's 7-8 sizes it covered the curves
        sns.move_legend(axes[row, 1], "upper left", bbox_to_anchor=(1.02, 1.0), title="FLOPs C", fontsize="x-small")
    fig.tight_layout()
    style.save(fig, pdf, png, dpi)


def caption_values(data: dict[str, tuple[pd.DataFrame, pd.DataFrame]]) -> dict:
    """Per data set and budget: the size with the lowest test loss (seed means of every run the left
    panel draws), and whether ``chi_pos`` ranks the sizes as the test loss does (Spearman correlation
    over the sizes of the seed means, runs with a ``chi_pos`` at that budget only: a run whose last
    measurement falls short of the budget has none)."""
    out = []
    for name, (loss, pos) in data.items():
        means = loss.groupby(["budget", "size"], as_index=False)["test_loss"].mean()
        both = (
            loss.merge(pos, on=["budget", "size", "seed", "params"])
            .groupby(["budget", "size"], as_index=False)[["test_loss", "chi_pos"]]
            .mean()
        )
        budgets = []
        for budget, g in means.groupby("budget"):
            ranked = both[both["budget"] == budget]
            budgets.append(
                {
                    "budget": float(budget),
                    "best": g.loc[g["test_loss"].idxmin(), "size"],
                    "rank_corr": float(ranked["test_loss"].corr(ranked["chi_pos"], method="spearman")),
                }
            )
        out.append({"name": name, "budgets": budgets, "agree": sum(b["rank_corr"] > 0 for b in budgets)})
    return {"datasets": out}
