"""Fig. 4: ``chi_pos(pretrained backbone) / chi_pos(random backbone)`` of linear probes vs model
size (Eq. 12 with the top-fraction filter of App. C.1), one panel per data set, one line per
window of normalized training time; mean over seeds with a band of one sd. Below 1: the
pretrained features let the probe reach further into the spectral tail."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from . import style


def plot(data: dict[str, pd.DataFrame], pdf: str, png: str, *, width: float, height: float, dpi: int) -> None:
    style.setup()
    fig, axes = plt.subplots(1, len(data), figsize=(width, height), squeeze=False)
    for ax, (name, ratios) in zip(axes[0], data.items()):
        df = ratios.assign(window=[f"t in [{a:g}, {b:g})" for a, b in zip(ratios["t0"], ratios["t1"])])
        sns.lineplot(df, x="params", y="ratio", hue="window", marker="o", errorbar="sd", ax=ax, palette="viridis")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set(xscale="log", yscale="log", xlabel="parameters N", ylabel="χ_pos(pretrained) / χ_pos(random)", title=name)
        ax.legend(fontsize="x-small")
    fig.tight_layout()
    style.save(fig, pdf, png, dpi)
