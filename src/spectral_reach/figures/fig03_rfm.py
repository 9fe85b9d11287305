"""Fig. 3: random-feature models. Left, the data spectra; right, LNP components against theory."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from ..rfm import data_spectrum
from . import style


def plot(
    runs: pd.DataFrame,
    curves: pd.DataFrame,
    input_dim: int,
    pdf: str,
    png: str,
    *,
    width: float,
    height: float,
    dpi: int,
) -> None:
    style.setup()
    fig, (left, right) = plt.subplots(1, 2, figsize=(width, height))
    alphas = sorted(runs["alpha"].unique())
    colors = sns.color_palette("viridis", len(alphas))
    for color, a in zip(colors, alphas):
        left.loglog(range(1, input_dim + 1), data_spectrum(input_dim, a), color=color, label=f"α = {a:g}")
    left.set(xlabel="k", ylabel="λ_k", title="data spectra")
    left.legend(fontsize="small")

    long = runs.melt(
        id_vars=["alpha", "seed"],
        value_vars=["chi_loss", "chi_net", "chi_pos"],
        var_name="component",
        value_name="value",
    )
    sns.lineplot(long, x="alpha", y="value", hue="component", errorbar="sd", marker="o", ax=right)
    right.plot(curves["alpha"], curves["chi_pos_kernel"], "k--", label="χ_pos theory (kernel spectrum)")
    right.plot(curves["alpha"], curves["chi_pos_teacher"], "k-.", label="χ_pos theory (kernel, exact teacher mean)")
    right.plot(curves["alpha"], curves["chi_pos_linear"], "k:", label="χ_pos theory (linear dominance)")
    right.axhline(1.0, color="grey", lw=0.8, label="χ_loss, χ_net theory")
    right.set(xlabel="α", ylabel="value (mean ± sd over seeds)", title="LNP at initialisation")
    right.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    style.save(fig, pdf, png, dpi)


def caption_values(runs: pd.DataFrame, dev: pd.DataFrame) -> dict:
    """The largest deviations from theory over alpha (``dev``: :func:`..rfm.deviations`), and the
    seed count of ``runs``."""

    def span(col: str) -> tuple[float, float]:
        return float(dev[col].min()), float(dev[col].max())

    return {
        "alphas": [float(a) for a in dev["alpha"]],
        "seeds": int(runs.groupby("alpha")["seed"].nunique().min()),
        "chi_loss_max_dev": float(dev["dev_chi_loss"].abs().max()),
        "chi_net_max_dev": float(dev["dev_chi_net"].abs().max()),
        "kernel": span("dev_chi_pos_kernel"),
        "teacher": span("dev_chi_pos_teacher"),
        "linear": span("dev_chi_pos_linear"),
        "within_spread": int(dev["chi_pos_kernel_within_spread"].sum()),
    }
