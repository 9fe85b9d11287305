"""Fig. 14 (beyond the paper): the optimizer question in the random-feature model. (a) final test
loss against width per optimizer and budget, at the first data exponent; (b) chi_pos of the
gradient step along the longest budget at the largest width; (c) the fitted exponent alpha of
``L(N)`` per optimizer, budget and data exponent, as the local slope ``-d log L / d log N`` between
the two largest widths, with a published study's values marked; seed means."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from . import style


def plot(
    finals: pd.DataFrame,
    curves: pd.DataFrame,
    fits: pd.DataFrame,
    published: dict[str, float],
    pdf: str,
    png: str,
    *,
    width: float,
    height: float,
    dpi: int,
) -> None:
    style.setup()
    fig, axes = plt.subplots(1, 3, figsize=(width, height))
    order = list(dict.fromkeys(finals["optimizer"]))
    palette = dict(zip(order, sns.color_palette("tab10", len(order))))
    s0 = finals["s"].min()
    sns.lineplot(finals[finals["s"] == s0], x="width", y="test_loss", hue="optimizer", hue_order=order, palette=palette,
                 style="budget", marker="o", errorbar=None, ax=axes[0])  # fmt: skip
    axes[0].set(xscale="log", yscale="log", xlabel="width N", ylabel="final test loss", title=f"(a) loss, s = {s0:g}")
    last = curves[(curves["s"] == s0) & (curves["budget"] == curves["budget"].max())]
    last = last[(last["width"] == last["width"].max()) & (last["chi_pos"] > 0)]
    sns.lineplot(last, x="step", y="chi_pos", hue="optimizer", hue_order=order, palette=palette, errorbar=None,
                 ax=axes[1])  # fmt: skip
    axes[1].set(xscale="symlog", yscale="log", xlabel="step", ylabel="χ_pos", xlim=(0, None),
                title=f"(b) χ_pos, N = {last['width'].max()}, T = {curves['budget'].max()}")  # fmt: skip
    bars = fits.assign(run=[f"s={s:g}, T={t}" for s, t in zip(fits["s"], fits["budget"])])
    sns.barplot(bars, x="run", y="local_slope", hue="optimizer", hue_order=order, palette=palette, ax=axes[2])
    for name, value in published.items():
        axes[2].axhline(value, color=palette.get(name, "k"), ls="--", lw=1)
    axes[2].set(xlabel="", ylabel="-d log L / d log N", title="(c) exponent at the largest N; dashed: published")
    axes[2].tick_params(axis="x", labelrotation=30)
    for ax, below in zip(axes, (-0.3, -0.3, -0.5)):  # (c) below its slanted labels
        style.tidy_log_axes(ax)
        if ax.get_legend() is not None:
            sns.move_legend(ax, "upper center", bbox_to_anchor=(0.5, below), ncol=3, fontsize="x-small", frameon=False)
    fig.tight_layout()
    style.save(fig, pdf, png, dpi)


def caption_values(fits: pd.DataFrame, published: dict[str, float]) -> dict:
    """Per (s, budget, optimizer): the local slope, and the fitted alpha and its error where the fit
    determines them (else ``None``); the published values."""
    rows = [
        {
            "s": r.s,
            "budget": int(r.budget),
            "optimizer": r.optimizer,
            "slope": r.local_slope,
            "alpha": r.alpha if r.determined else None,
            "err": r.alpha_err,
        }  # fmt: skip
        for r in fits.itertuples()
    ]
    return {"fits": rows, "published": published}
