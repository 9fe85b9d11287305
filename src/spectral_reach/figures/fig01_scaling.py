"""Fig. 1: top, final train loss vs parameters with a fitted power law; bottom, chi_pos vs step.

One column per data set. chi_pos: mean over seeds with a band of one sd; single steps before
``raw_steps``, means over each measurement window after (App. C.1). The mean over seeds comes
first: a point whose seed mean is non-positive cannot be drawn on a log axis and is left out (the
table keeps it); a point whose mean is positive is drawn at that mean, non-positive seeds included.
The sd band is left out where ``mean - sd <= 0`` (:func:`.panels.seed_mean_lines`).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from ..analysis.claims import by_size, decreasing, dynamics, final
from . import style
from .panels import positive_means, scaling_panel, seed_mean_lines


def chi_pos_panel(ax: plt.Axes, windows: pd.DataFrame, order: list[str]) -> None:
    seed_mean_lines(ax, positive_means(windows, "chi_pos", ["size", "step"]), "step", "chi_pos", "size", order)
    ax.set(xscale="symlog", yscale="log", xlabel="step", ylabel="χ_pos", xlim=(0, None))
    ax.legend(title="size", fontsize="x-small")


def plot(
    data: dict[str, tuple[pd.DataFrame, pd.DataFrame]],
    fits: pd.DataFrame,
    pdf: str,
    png: str,
    *,
    width: float,
    height: float,
    dpi: int,
) -> None:
    """``data``: data set -> (runs, lnp windows); ``fits``: each data set's train-loss fit."""
    style.setup()
    fig, axes = plt.subplots(2, len(data), figsize=(style.per_dataset(width, len(data)), height), squeeze=False)
    for col, (name, (runs, windows)) in enumerate(data.items()):
        order = list(dict.fromkeys(runs.sort_values("params")["size"]))
        scaling_panel(axes[0, col], runs, "final_train_loss", name, fits.set_index("dataset").loc[name].to_dict())
        axes[0, col].set_ylabel("final train loss")
        chi_pos_panel(axes[1, col], windows, order)
    fig.tight_layout()
    style.save(fig, pdf, png, dpi)


def caption_values(data: dict[str, tuple[pd.DataFrame, pd.DataFrame]], fits: pd.DataFrame) -> dict:
    """Per data set: the fit, the final train loss per size and the chi_pos curve's verdicts."""
    out = []
    for name, (runs, windows) in data.items():
        loss = final(runs, "final_train_loss")
        fit = fits[fits["dataset"] == name].iloc[0].to_dict()
        out.append(
            {
                **fit,
                "name": name,
                "sizes": list(by_size(runs).index),
                "loss": loss,
                "loss_ordered": decreasing(loss),
                "chi_pos": dynamics(windows, runs, "chi_pos"),
            }
        )
    return {"datasets": out}
