"""Fig. 9: ViTs on CIFAR-5M classification, standard (left) and muP (right) parameterization.

Top: training loss vs step (a running mean over ``smooth`` steps). Bottom: ``chi_pos`` vs step,
raw for the first steps and window means after (as Fig. 1), mean over seeds with a band of one sd.
``chi_pos`` of the cross variant is signed, so its axis is linear.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from ..analysis.claims import by_size, decreasing, dynamics, final
from . import style
from .panels import seed_mean_lines

TITLES = {"standard": "standard", "mup": "muP"}


def plot(
    runs: pd.DataFrame,
    windows: pd.DataFrame,
    curves: pd.DataFrame,
    pdf: str,
    png: str,
    *,
    width: float,
    height: float,
    dpi: int,
) -> None:
    style.setup()
    pars = [p for p in TITLES if p in set(runs["parametrization"])]
    fig, axes = plt.subplots(2, len(pars), figsize=(width, height), squeeze=False, sharex="col")
    for col, par in enumerate(pars):
        order = list(dict.fromkeys(runs[runs["parametrization"] == par].sort_values("params")["size"]))
        top, bottom = axes[0, col], axes[1, col]
        seed_mean_lines(top, curves[curves["parametrization"] == par], "step", "loss", "size", order, log=False)
        par_windows = windows[windows["parametrization"] == par]
        seed_mean_lines(bottom, par_windows, "step", "chi_pos", "size", order, legend=False, log=False)
        # symlog: step 0, whose values the caption quotes, is on the axis (a log axis drops it)
        top.set(xscale="symlog", ylabel="training loss", title=TITLES[par], xlim=(0, None))
        bottom.set(xscale="symlog", xlabel="step", ylabel="χ_pos", xlim=(0, None))
        bottom.axhline(0, color="0.6", lw=0.6)
    fig.tight_layout()
    style.save(fig, pdf, png, dpi)


def caption_values(runs: pd.DataFrame, windows: pd.DataFrame) -> dict:
    """Per parameterization: final train and test loss per size and the chi_pos curve's verdicts."""
    out = []
    for par in [p for p in TITLES if p in set(runs["parametrization"])]:
        r, w = runs[runs["parametrization"] == par], windows[windows["parametrization"] == par]
        train, test = final(r, "final_train_loss"), final(r, "final_test_loss")
        out.append(
            {
                "name": TITLES[par],
                "sizes": list(by_size(r).index),
                "seeds": int(r["seed"].nunique()),
                "train_loss": train,
                "test_loss": test,
                "loss_ordered": decreasing(train),
                "chi_pos": dynamics(w, r, "chi_pos"),
            }
        )
    return {"parametrizations": out}
