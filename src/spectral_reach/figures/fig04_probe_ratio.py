"""Fig. 4: ``chi_pos(pretrained backbone) / chi_pos(random backbone)`` of linear probes vs model
size (Eq. 12 with the top-fraction filter of App. C.1), one panel per data set, one line per
window of normalized training time; mean over seeds with a band of one sd. Below 1: the
pretrained features let the probe reach further into the spectral tail. A size where any seed's
ratio is undefined (NaN: a non-positive mean ``chi_pos``) is not drawn, as its caption value is
NaN, and the line breaks there (no segment bridges it); the sd band is left out where
``mean - sd <= 0``."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from ..analysis.claims import by_size
from . import style


def plot(data: dict[str, pd.DataFrame], pdf: str, png: str, *, width: float, height: float, dpi: int) -> None:
    style.setup()
    fig, axes = plt.subplots(1, len(data), figsize=(style.per_dataset(width, len(data)), height), squeeze=False)
    for ax, (name, ratios) in zip(axes[0], data.items()):
        windows = list(ratios.groupby(["t0", "t1"]))
        for color, ((t0, t1), g) in zip(sns.color_palette("viridis", len(windows)), windows):
            # NaN where any seed's ratio is undefined: the line breaks there instead of bridging it
            stats = g.groupby("params")["ratio"].agg([lambda r: r.mean(skipna=False), "std"]).sort_index()
            mean, sd = stats.iloc[:, 0], stats["std"].fillna(0).where(stats.iloc[:, 0].notna())
            ax.plot(mean.index, mean, marker="o", color=color, label=f"t in [{t0:g}, {t1:g})")
            low = mean - sd
            ax.fill_between(mean.index, low.where(low > 0), mean + sd, color=color, alpha=0.2, lw=0)
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set(
            xscale="log", yscale="log", xlabel="parameters N", ylabel="χ_pos(pretrained) / χ_pos(random)", title=name
        )
        style.tidy_log_axes(ax)
        ax.legend(fontsize="x-small")
    fig.tight_layout()
    style.save(fig, pdf, png, dpi)


def caption_values(data: dict[str, pd.DataFrame]) -> dict:
    """Per data set and time window: the seed-mean ratio per size (NaN where a seed's ratio is
    undefined), whether every defined one is below 1, and how many sizes have none."""
    out = []
    for name, ratios in data.items():
        sizes = list(by_size(ratios).index)
        windows = []
        for (t0, t1), g in ratios.groupby(["t0", "t1"]):
            mean = g.groupby("size")["ratio"].agg(lambda r: r.mean(skipna=False))
            values = [float(mean[s]) for s in sizes]
            defined = [v for v in values if not math.isnan(v)]
            windows.append(
                {
                    "t0": float(t0),
                    "t1": float(t1),
                    "ratio": values,
                    "below": bool(defined) and all(v < 1 for v in defined),
                    "undefined": len(values) - len(defined),
                }
            )
        out.append({"name": name, "sizes": sizes, "seeds": int(ratios["seed"].nunique()), "windows": windows})
    return {"datasets": out}
