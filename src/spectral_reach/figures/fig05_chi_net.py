"""Fig. 5: ``chi_net`` vs step under full training (solid) and for linear probes on random
backbones (dashed), per size (colour), one panel per data set; mean over seeds."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from ..analysis.claims import trajectory
from . import style


def plot(
    data: dict[str, tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]],
    pdf: str,
    png: str,
    *,
    width: float,
    height: float,
    dpi: int,
) -> None:
    """``data``: data set -> (LM lnp windows, probe lnp windows, LM runs)."""
    style.setup()
    fig, axes = plt.subplots(1, len(data), figsize=(style.per_dataset(width, len(data)), height), squeeze=False)
    for ax, (name, (lm, probe, runs)) in zip(axes[0], data.items()):
        order = list(dict.fromkeys(runs.sort_values("params")["size"]))
        both = pd.concat(
            [lm.assign(training="full"), probe[probe["backbone"] == "random"].assign(training="probe, random backbone")]
        )
        sns.lineplot(
            both,
            x="step",
            y="chi_net",
            hue="size",
            hue_order=order,
            style="training",
            errorbar=None,
            ax=ax,
            palette="viridis",
        )
        ax.set(xscale="symlog", yscale="log", xlabel="step", ylabel="χ_net", title=name, xlim=(0, None))
        style.tidy_log_axes(ax)
        # below the panel: with the paper's 7-8 sizes and two line styles it would cover the curves
        sns.move_legend(ax, "upper center", bbox_to_anchor=(0.5, -0.3), ncol=4, fontsize="x-small", frameon=False)
    fig.tight_layout()
    style.save(fig, pdf, png, dpi)


def caption_values(data: dict[str, tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]]) -> dict:
    """Per data set and size: ``chi_net``'s last over first value under full training, and its largest
    relative change along the probe's curve on a random backbone (seed means)."""
    out = []
    for name, (lm, probe, runs) in data.items():
        full = trajectory(lm, runs, "chi_net")
        random = probe[probe["backbone"] == "random"].groupby(["size", "step"])["chi_net"].mean()
        sizes = []
        for row in full:
            curve = random.loc[row["size"]] if row["size"] in random.index.get_level_values(0) else None
            sizes.append(
                {
                    "size": row["size"],
                    "growth": row["last"] / row["first"],
                    "probe_change": None if curve is None else float(curve.max() / curve.min() - 1),
                }
            )
        out.append({"name": name, "sizes": sizes})
    return {"datasets": out}
