"""Fig. 13 (beyond the paper): the interventions of its Sec. 6-7 on one data set. (a) chi_pos over
training per variant at one size, (b) final test loss against parameters per variant, and, where the
runs measured LNP per layer (config lnp_groups), (c) chi_pos and (d) chi_net of each parameter group
over training for the base runs at that size; seed means throughout."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib import ticker

from ..analysis.interventions import BASE
from . import style


def _variants(runs: pd.DataFrame) -> list[str]:
    return [BASE] + sorted(v for v in runs["variant"].unique() if v != BASE)


def plot(
    runs: pd.DataFrame,
    windows: pd.DataFrame,
    groups: pd.DataFrame | None,
    size: str,
    pdf: str,
    png: str,
    *,
    width: float,
    height: float,
    dpi: int,
) -> None:
    """``runs`` and ``windows``: the variant summary (``variant`` column); ``groups``: window means of the
    base runs' parameter groups at ``size`` (``group``, ``step``, ``chi_pos``, ``chi_net``), or ``None``."""
    style.setup()
    panels = 2 if groups is None else 4
    fig, axes = plt.subplots(1, panels, figsize=(width * panels / 4, height), squeeze=False)
    axes = axes[0]
    order = _variants(runs)
    at_size = windows[(windows["size"] == size) & (windows["chi_pos"] > 0)]
    palette = dict(zip(order, sns.color_palette("tab10", len(order))))  # variants are categories, not a scale
    sns.lineplot(
        at_size, x="step", y="chi_pos", hue="variant", hue_order=order, palette=palette, errorbar=None, ax=axes[0]
    )
    axes[0].set(xscale="symlog", yscale="log", xlabel="step", ylabel="χ_pos", title=f"(a) χ_pos, size {size}")
    finals = runs.groupby(["variant", "size"], as_index=False)[["params", "final_test_loss"]].mean()
    sns.lineplot(finals, x="params", y="final_test_loss", hue="variant", hue_order=order, palette=palette,
                 marker="o", errorbar=None, ax=axes[1])  # fmt: skip
    axes[1].set(xscale="log", xlabel="parameters N", ylabel="final test loss", title="(b) loss against size")
    if groups is not None:
        for ax, column, name in ((axes[2], "chi_pos", "(c) χ_pos"), (axes[3], "chi_net", "(d) χ_net")):
            data = groups[groups[column] > 0]
            sns.lineplot(data, x="step", y=column, hue="group", errorbar=None, ax=ax, palette="tab10")
            ax.set(xscale="symlog", yscale="log", xlabel="step", ylabel=column.replace("chi_", "χ_"))
            ax.set_title(f"{name} per layer, {BASE}, size {size}")
    for ax in axes:
        style.tidy_log_axes(ax)
        if ax.get_xscale() == "symlog":
            ax.set_xlim(0, None)
        if ax.get_legend() is not None:
            sns.move_legend(ax, "upper center", bbox_to_anchor=(0.5, -0.28), ncol=3, fontsize="x-small", frameon=False)
    # one labelled tick per size: evenly spaced labels collide in a quarter-width panel
    axes[1].xaxis.set_major_locator(ticker.FixedLocator(sorted(finals["params"].unique())))
    axes[1].xaxis.set_major_formatter(ticker.EngFormatter(places=0, sep=""))
    axes[1].xaxis.set_minor_locator(ticker.NullLocator())
    fig.tight_layout()
    style.save(fig, pdf, png, dpi)


def caption_values(table: pd.DataFrame, fits: pd.DataFrame, size: str) -> dict:
    """Per variant: at ``size`` its last-window chi_pos and final test loss, and its fitted alpha
    (``None`` where the fit is undetermined: :func:`..analysis.lm.fit_verdict`)."""
    test = fits[fits["loss"] == "test"].set_index("variant")
    alpha = test["alpha"].where(test["determined"].astype(bool))
    rows = table[table["size"] == size].set_index("variant")
    return {
        "size": size,
        "variants": [
            {
                "name": v,
                "chi_pos": float(rows.loc[v, "chi_pos"]),
                "loss": float(rows.loc[v, "final_test_loss"]),
                "alpha": None if pd.isna(alpha.get(v)) else float(alpha[v]),
            }
            for v in rows.index
        ],
    }
