"""Fig. 6: top, the coefficient of variation of the Hutchinson estimate of ``sum_i ||J_i||_F^2``
vs the number of vectors K, with the fitted slope and the ``K^(-1/2)`` line; bottom, ``chi_pos``
of every seed (thin lines) per size (colour), one panel per data set."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from . import style


def plot(
    cv: pd.DataFrame,
    data: dict[str, tuple[pd.DataFrame, pd.DataFrame]],
    pdf: str,
    png: str,
    *,
    width: float,
    height: float,
    dpi: int,
) -> None:
    """``cv``: K, cv, slope, cv1_fit; ``data``: data set -> (LM lnp windows, LM runs)."""
    style.setup()
    fig = plt.figure(figsize=(width, height))
    top = fig.add_subplot(2, 1, 1)
    k = cv["k"].to_numpy(float)
    top.loglog(k, cv["cv"], "o", label="measured")
    top.loglog(
        k,
        cv["cv1_fit"].iloc[0] * k ** cv["slope"].iloc[0],
        "k--",
        label=f"fit: slope {cv['slope'].iloc[0]:.3f} ± {cv['slope_err'].iloc[0]:.3f}",
    )
    top.loglog(k, cv["cv"].iloc[0] * k**-0.5, ":", color="grey", label="K^(-1/2)")
    top.set(xlabel="Hutchinson vectors K", ylabel="CV of Σ‖J_i‖²", xticks=k, xticklabels=[f"{x:g}" for x in k])
    top.legend(fontsize="x-small")
    for i, (name, (windows, runs)) in enumerate(data.items()):
        ax = fig.add_subplot(2, len(data), len(data) + i + 1)
        order = list(dict.fromkeys(runs.sort_values("params")["size"]))
        df = windows[windows["chi_pos"] > 0]
        sns.lineplot(
            df,
            x="step",
            y="chi_pos",
            hue="size",
            hue_order=order,
            units="seed",
            estimator=None,
            lw=0.8,
            ax=ax,
            palette="viridis",
        )
        ax.set(
            xscale="symlog", yscale="log", xlabel="step", ylabel="χ_pos", title=f"{name}: every seed", xlim=(0, None)
        )
        ax.legend(fontsize="x-small")
    fig.tight_layout()
    style.save(fig, pdf, png, dpi)


def caption_values(cv: pd.DataFrame, data: dict[str, tuple[pd.DataFrame, pd.DataFrame]]) -> dict:
    """The fitted slope, the CV at the smallest and largest K, and per data set the largest spread
    between seeds of the last window's ``chi_pos`` (standard deviation over mean)."""
    last = []
    for name, (windows, runs) in data.items():
        ends = windows.sort_values("step").groupby(["size", "seed"])["chi_pos"].last().groupby("size")
        spread = (ends.std() / ends.mean().abs()).max()
        last.append({"name": name, "seed_spread": float(spread), "seeds": int(runs["seed"].nunique())})
    return {
        "slope": float(cv["slope"].iloc[0]),
        "slope_err": float(cv["slope_err"].iloc[0]),
        "k_min": int(cv["k"].iloc[0]),
        "cv_min": float(cv["cv"].iloc[0]),
        "k_max": int(cv["k"].iloc[-1]),
        "cv_max": float(cv["cv"].iloc[-1]),
        "datasets": last,
    }
