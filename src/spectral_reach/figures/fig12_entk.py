"""Fig. 12: explicit eNTK of a reduced output space at initialisation and after training:
distributions of ``lhat_k``, of ``chat_k^2`` against ``lhat_k``, and the cumulative
``sum lhat_k chat_k^2`` (which ends at ``chi_pos``) from the largest eigenvalue down."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from . import style


def plot(
    spectrum: pd.DataFrame, shift: pd.DataFrame, pdf: str, png: str, *, width: float, height: float, dpi: int
) -> None:
    style.setup()
    df = spectrum[spectrum["lhat"] > 0].assign(
        log10_lhat=lambda d: np.log10(d["lhat"]), product=lambda d: d["lhat"] * d["chat_sq"]
    )
    labels = {r.stage: f"{r.stage}: shift {r.shift:.2f}, χ_pos {r.chi_pos:.3g}" for r in shift.itertuples()}
    df = df.assign(stage=df["stage"].map(labels))
    # two colours far apart (the shared viridis palette gives two near-identical dark ones), the
    # same in every panel, and one legend for the figure, below the panels, covering no data
    stages = list(labels.values())
    palette = dict(zip(stages, sns.color_palette("colorblind", len(stages))))
    fig, axes = plt.subplots(1, 3, figsize=(width, height))
    sns.histplot(
        df,
        x="log10_lhat",
        hue="stage",
        hue_order=stages,
        palette=palette,
        element="step",
        stat="density",
        common_norm=False,
        ax=axes[0],
        legend=False,
    )
    axes[0].set(xlabel="log10 λ̂_k", title="eigenvalues")
    sns.scatterplot(
        df, x="lhat", y="chat_sq", hue="stage", hue_order=stages, palette=palette, s=8, ax=axes[1], legend=False
    )
    axes[1].set(xscale="log", yscale="log", xlabel="λ̂_k", ylabel="ĉ_k²", title="gradient projections")
    for stage, g in df.groupby("stage"):
        g = g.sort_values("lhat", ascending=False)
        axes[2].plot(g["lhat"], g["product"].cumsum(), label=stage, color=palette[stage])
    axes[2].set(xscale="log", xlabel="λ̂_k (descending)", ylabel="Σ λ̂ ĉ² over larger eigenvalues", title="reach")
    axes[2].invert_xaxis()
    fig.tight_layout()
    handles, names = axes[2].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(stages), fontsize="small")
    style.save(fig, pdf, png, dpi)


def caption_values(shift: pd.DataFrame) -> dict:
    """Each stage's summary row (chi_pos, shift, median lhat, effective rank, outputs)."""
    return {row["stage"]: row for row in shift.to_dict("records")}
